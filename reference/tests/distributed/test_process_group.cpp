// Process groups across real processes (not threads): pg_worker ranks
// rendezvous through a FileStore or torchrun's TCPStore variables.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "ccts/distributed/process_group.h"

extern char** environ;

namespace {

// Starts one worker with extra environment entries; returns its pid.
pid_t spawn_worker(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> all_env(env);
  for (char** e = environ; *e; ++e) all_env.emplace_back(*e);
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<std::string> full_args{CCTS_PG_WORKER};
  full_args.insert(full_args.end(), args.begin(), args.end());
  for (auto& a : full_args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : all_env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, CCTS_PG_WORKER, nullptr, nullptr, argv.data(), envp.data()) == 0);
  return pid;
}

// Waits for every worker; kills all of them after the deadline. Returns
// their exit codes (-1 for killed).
std::vector<int> wait_all(const std::vector<pid_t>& pids, std::chrono::seconds limit) {
  std::vector<int> codes(pids.size(), -2);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::size_t left = pids.size();
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (codes[i] != -2) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        --left;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (codes[i] == -2) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], nullptr, 0);
      codes[i] = -1;
    }
  }
  return codes;
}

int free_port() {
  // Distinct per test process; the OS picks nothing here, so spread by pid.
  return 20000 + (getpid() % 20000);
}

}  // namespace

TEST_CASE("collectives across 2 and 4 processes through a FileStore") {
  for (int world_size : {2, 4}) {
    INFO("world size " << world_size);
    const auto store = std::filesystem::temp_directory_path() /
                       ("ccts_pg_" + std::to_string(getpid()) + "_" + std::to_string(world_size));
    std::filesystem::remove(store);
    std::vector<pid_t> pids;
    for (int rank = 0; rank < world_size; ++rank) {
      pids.push_back(spawn_worker({"file", store.string(), std::to_string(rank), std::to_string(world_size)}, {}));
    }
    CHECK(wait_all(pids, std::chrono::seconds(60)) == std::vector<int>(world_size, 0));
    std::filesystem::remove(store);
  }
}

TEST_CASE("collectives across 2 processes through torchrun's environment (TCPStore)") {
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(spawn_worker({"env"}, {"RANK=" + std::to_string(rank), "WORLD_SIZE=2",
                                          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port}));
  }
  CHECK(wait_all(pids, std::chrono::seconds(60)) == std::vector<int>{0, 0});
}

TEST_CASE("from_env names the missing variable") {
  unsetenv("RANK");
  CHECK_THROWS_WITH(ccts::distributed::ProcessGroup::from_env(),
                    Catch::StartsWith("environment variable RANK is not set"));
  CHECK_THROWS_WITH(ccts::distributed::ProcessGroup::from_env("nccl"),
                    Catch::Contains("backend 'nccl' is not supported"));
}
