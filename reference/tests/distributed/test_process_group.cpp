// Process groups across real processes (not threads): pg_worker ranks
// rendezvous through a FileStore or torchrun's TCPStore variables, run every
// collective and check exact values; a hung rank is killed at a deadline.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>
// LibTorch defines a glog-style CHECK when built without glog; the tests use Catch2's.
#undef CHECK
#include "ccts_catch.h"

#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"

extern char** environ;

using ccts::distributed::ProcessGroup;
using ccts::distributed::ReduceOp;

namespace {

constexpr int kKilled = -1;

// A fresh directory under $TMPDIR (or /tmp), removed with the plain files in
// it. POSIX calls, not std::filesystem: LibTorch 2.x wheels export parts of an
// older libstdc++'s std::filesystem, and mixing those with a newer compiler's
// inline parts crashed remove_all.
struct TempDir {
  std::string path;
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/ccts_pg_XXXXXX";
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    if (DIR* dir = opendir(path.c_str())) {
      while (const dirent* entry = readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != "..") unlink((path + "/" + name).c_str());
      }
      closedir(dir);
    }
    rmdir(path.c_str());
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// Starts pg_worker with `args`; `env` entries come first, so they override
// the test's own environment. With `stderr_path`, the worker's stderr goes there.
pid_t spawn_worker(const std::vector<std::string>& args, const std::vector<std::string>& env,
                   const std::string& stderr_path = "") {
  std::vector<std::string> all_env(env);
  // The workers give up on a missing peer well before the test kills them.
  all_env.emplace_back("CCTS_PG_TIMEOUT_S=10");
  for (char** e = environ; *e != nullptr; ++e) all_env.emplace_back(*e);
  std::vector<std::string> full_args{CCTS_PG_WORKER};
  full_args.insert(full_args.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full_args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : all_env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!stderr_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, CCTS_PG_WORKER, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  return pid;
}

// Waits for every worker; SIGKILLs those still running at the deadline.
// Returns their exit statuses (kKilled for killed or signalled ones).
std::vector<int> wait_all(const std::vector<pid_t>& pids, std::chrono::seconds limit) {
  std::vector<int> codes(pids.size(), -2);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::size_t left = pids.size();
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (codes[i] != -2) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : kKilled;
        --left;
      }
    }
    if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (codes[i] == -2) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], nullptr, 0);
      codes[i] = kKilled;
    }
  }
  return codes;
}

// Runs world_size FileStore ranks of pg_worker; returns their exit statuses.
std::vector<int> run_file_ranks(int world_size, const std::string& backend) {
  TempDir dir;
  const std::string store = dir.file("store");
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world_size; ++rank) {
    pids.push_back(spawn_worker({"file", store, std::to_string(rank), std::to_string(world_size), backend}, {}));
  }
  return wait_all(pids, std::chrono::seconds(30));
}

// A file's contents (POSIX reads: no iostreams in this test).
std::string read_text(const std::string& path) {
  std::string text;
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) text.append(buffer, static_cast<std::size_t>(n));
  close(fd);
  return text;
}

// A TCP port nothing listens on right now (the OS picks it).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  REQUIRE(ok);
  return ntohs(addr.sin_port);
}

// Sets or unsets environment variables for one scope, then restores them.
class ScopedEnv {
 public:
  void set(const char* name, const char* value) {
    remember(name);
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->had) {
        setenv(it->name.c_str(), it->value.c_str(), 1);
      } else {
        unsetenv(it->name.c_str());
      }
    }
  }

 private:
  struct Saved {
    std::string name;
    bool had;
    std::string value;
  };
  void remember(const char* name) {
    const char* old = std::getenv(name);
    saved_.push_back({name, old != nullptr, old ? old : ""});
  }
  std::vector<Saved> saved_;
};

}  // namespace

TEST_CASE("gloo collectives give exact values across 2 processes (FileStore)") {
  CHECK(run_file_ranks(2, "gloo") == std::vector<int>(2, 0));
}

TEST_CASE("gloo collectives give exact values across 4 processes (FileStore)") {
  CHECK(run_file_ranks(4, "gloo") == std::vector<int>(4, 0));
}

TEST_CASE("gloo collectives across 2 processes from torchrun's environment (TCPStore)") {
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    pids.push_back(spawn_worker({"env", "gloo"}, {"RANK=" + std::to_string(rank), "WORLD_SIZE=2",
                                                  "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port}));
  }
  CHECK(wait_all(pids, std::chrono::seconds(30)) == std::vector<int>{0, 0});
}

TEST_CASE("a rank whose peers never arrive fails at the timeout instead of hanging") {
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const std::string log = dir.file("stderr");
  const pid_t pid = spawn_worker({"file", dir.file("store"), "0", "2", "gloo"},
                                 {"CCTS_PG_TIMEOUT_S=1"}, log);
  const auto codes = wait_all({pid}, std::chrono::seconds(20));
  CHECK(codes == std::vector<int>{3});  // the worker reports the exception
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(15));
  const std::string text = read_text(log);
  CHECK_THAT(text, ccts_catch::StartsWith("rank 0: gloo process group: rendezvous of rank 0 of 2 failed: "));
  CHECK(text.find("frame #") == std::string::npos);  // no C++ backtrace
}

TEST_CASE("a one-rank group's collectives are the identity (in process)") {
  TempDir dir;
  auto pg = ProcessGroup::from_file_store(dir.file("store"), 0, 1);
  CHECK(pg->rank() == 0);
  CHECK(pg->size() == 1);
  CHECK(pg->backend() == "gloo");
  CHECK(pg->native());
  torch::Tensor t = torch::arange(4, torch::kFloat32);
  pg->broadcast(t);
  pg->all_reduce(t, ReduceOp::Avg);
  CHECK(torch::equal(t, torch::arange(4, torch::kFloat32)));
  CHECK(torch::equal(pg->all_gather_into(t), t));
  CHECK(torch::equal(pg->reduce_scatter(t.reshape({4, 1})), t.reshape({4, 1})));
  pg->barrier();

  torch::Tensor ints = torch::arange(3, torch::kInt64);
  CHECK_THROWS_WITH(pg->all_reduce(ints, ReduceOp::Avg),
                    "all_reduce: Avg needs a floating-point tensor, got Long");
  CHECK_THROWS_WITH(pg->reduce_scatter(torch::scalar_tensor(1.0f)),
                    ccts_catch::StartsWith("reduce_scatter: dim 0 of the input (shape []) must be a multiple"));
  CHECK_THROWS_WITH(pg->broadcast(t, 1), "broadcast: src 1 is not in [0, 1)");

  // torch.distributed.new_subgroups' checks, with its ValueError texts.
  CHECK_THROWS_WITH(pg->new_subgroup(0), "The arg 'group_size' (0) must be positive");
  CHECK_THROWS_WITH(pg->new_subgroup(2), "The arg 'group_size' (2) must not exceed the world size (1)");
  auto self = pg->new_subgroup(1);
  CHECK((self->rank() == 0 && self->size() == 1));
}

TEST_CASE("from_file_store rejects bad ranks and backends") {
  TempDir dir;
  const std::string store = dir.file("store");
  CHECK_THROWS_WITH(ProcessGroup::from_file_store(store, 2, 2), "rank 2 is not in [0, world size 2)");
  CHECK_THROWS_WITH(ProcessGroup::from_file_store(store, 0, 0), "world size 0 is not positive");
  CHECK_THROWS_WITH(ProcessGroup::from_file_store(store, 0, 1, "mpi"),
                    "unknown backend 'mpi' (known: gloo, nccl)");
}

TEST_CASE("from_env names the missing or malformed variable") {
  ScopedEnv env;
  env.set("RANK", "0");
  env.set("WORLD_SIZE", "2");
  env.set("MASTER_ADDR", "127.0.0.1");
  env.set("MASTER_PORT", "29500");

  env.set("RANK", nullptr);
  CHECK_THROWS_WITH(ProcessGroup::from_env(),
                    "environment variable RANK is not set (a rank needs torchrun's RANK, WORLD_SIZE, "
                    "MASTER_ADDR and MASTER_PORT)");
  env.set("RANK", "one");
  CHECK_THROWS_WITH(ProcessGroup::from_env(), "environment variable RANK='one' is not an integer");
  env.set("RANK", "2");
  CHECK_THROWS_WITH(ProcessGroup::from_env(), "environment variable RANK=2 is not in [0, WORLD_SIZE=2)");
  env.set("RANK", "0");
  env.set("WORLD_SIZE", nullptr);
  CHECK_THROWS_WITH(ProcessGroup::from_env(), ccts_catch::StartsWith("environment variable WORLD_SIZE is not set"));
  env.set("WORLD_SIZE", "2");
  env.set("MASTER_ADDR", "");
  CHECK_THROWS_WITH(ProcessGroup::from_env(), ccts_catch::StartsWith("environment variable MASTER_ADDR is not set"));
  env.set("MASTER_ADDR", "127.0.0.1");
  env.set("MASTER_PORT", nullptr);
  CHECK_THROWS_WITH(ProcessGroup::from_env(), ccts_catch::StartsWith("environment variable MASTER_PORT is not set"));
  env.set("MASTER_PORT", "70000");
  CHECK_THROWS_WITH(ProcessGroup::from_env(),
                    "environment variable MASTER_PORT=70000 is not a TCP port (1..65535)");
  env.set("MASTER_PORT", "29500");
  env.set("CCTS_PG_TIMEOUT_S", "soon");
  CHECK_THROWS_WITH(ProcessGroup::from_env(),
                    "environment variable CCTS_PG_TIMEOUT_S='soon' is not a positive number of seconds");
}

TEST_CASE("backend nccl exists only in builds with NCCL") {
  TempDir dir;
  const std::string store = dir.file("store");
  const auto backends = ProcessGroup::available_backends();
  const bool has_nccl = std::find(backends.begin(), backends.end(), "nccl") != backends.end();
  CHECK(backends.front() == "gloo");
  CHECK(has_nccl == ccts::compat::kNccl);
  if (!has_nccl) {
    CHECK_THROWS_AS(ProcessGroup::from_file_store(store, 0, 1, "nccl"), ccts::Unsupported);
    CHECK_THROWS_WITH(ProcessGroup::from_env("nccl"),
                      ccts_catch::StartsWith("backend 'nccl' is not available: this build of LibTorch has no NCCL"));
    return;
  }
  if (!torch::cuda::is_available()) {
    WARN("built with NCCL but no CUDA device is visible: the NCCL run is not exercised");
    return;
  }
  // NCCL allows one rank per GPU.
  const int world_size = std::min<int>(2, static_cast<int>(torch::cuda::device_count()));
  INFO("NCCL world size " << world_size);
  CHECK(run_file_ranks(world_size, "nccl") == std::vector<int>(world_size, 0));
}
