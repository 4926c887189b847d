#!/bin/sh
# rank_in_netns.sh ADAPTER...: runs this rank's adapter on "host" ${CCTS_NETNS}$RANK, a network
# namespace whose eth0 is 10.231.0.(RANK+1); rank 0's is the rendezvous. The wrapper route of
# spec/ADAPTERS.md ("Running ranks on several machines"), with a namespace for a machine.
exec ip netns exec "${CCTS_NETNS:?}$RANK" env MASTER_ADDR=10.231.0.1 GLOO_SOCKET_IFNAME=eth0 "$@"
