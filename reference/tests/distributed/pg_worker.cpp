// One rank of the process-group tests: pg_worker file <path> <rank> <world_size>
// or pg_worker env (torchrun's variables). Runs every collective with
// rank-dependent inputs and exits 1 with a reason on the first wrong value.
#include <cstdlib>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include "ccts/distributed/process_group.h"

using ccts::distributed::ProcessGroup;
using ccts::distributed::ReduceOp;

namespace {

void expect(bool ok, const std::string& what, int rank) {
  if (!ok) {
    std::cerr << "rank " << rank << ": " << what << " is wrong\n";
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  std::shared_ptr<ProcessGroup> pg;
  try {
    if (mode == "file" && argc == 5) {
      pg = ProcessGroup::from_file_store(argv[2], std::stoi(argv[3]), std::stoi(argv[4]));
    } else if (mode == "env") {
      pg = ProcessGroup::from_env();
    } else {
      std::cerr << "usage: pg_worker file <path> <rank> <world_size> | pg_worker env\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 3;
  }
  const int rank = pg->rank();
  const int n = pg->size();
  const float total = n * (n + 1) / 2.0f;

  torch::Tensor b = torch::full({3}, float(rank + 1));
  pg->broadcast(b, 0);
  expect(torch::equal(b, torch::ones({3})), "broadcast", rank);

  torch::Tensor s = torch::full({2}, float(rank + 1));
  pg->all_reduce(s, ReduceOp::Sum);
  expect(torch::equal(s, torch::full({2}, total)), "all_reduce(Sum)", rank);

  torch::Tensor a = torch::full({2}, float(rank + 1));
  pg->all_reduce(a, ReduceOp::Avg);
  expect(torch::allclose(a, torch::full({2}, total / n)), "all_reduce(Avg)", rank);

  torch::Tensor async = torch::full({4}, float(rank + 1));
  auto work = pg->all_reduce_async(async, ReduceOp::Sum);
  work->wait();
  expect(work->is_completed() && torch::equal(async, torch::full({4}, total)), "all_reduce_async", rank);

  auto gathered = pg->all_gather(torch::full({2}, float(rank)));
  expect(static_cast<int>(gathered.size()) == n, "all_gather size", rank);
  for (int r = 0; r < n; ++r) expect(torch::equal(gathered[r], torch::full({2}, float(r))), "all_gather", rank);
  expect(pg->all_gather_into(torch::full({2}, float(rank))).size(0) == 2 * n, "all_gather_into", rank);

  torch::Tensor input = torch::arange(2 * n, torch::kFloat32) * float(rank + 1);
  torch::Tensor chunk = pg->reduce_scatter(input, ReduceOp::Sum);
  expect(torch::equal(chunk, torch::arange(2 * rank, 2 * rank + 2, torch::kFloat32) * total),
         "reduce_scatter", rank);

  pg->barrier();
  return 0;
}
