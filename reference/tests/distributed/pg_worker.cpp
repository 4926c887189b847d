// One rank of the process-group tests:
//   pg_worker file <path> <rank> <world_size> [gloo|nccl]   (FileStore)
//   pg_worker env [gloo|nccl]                               (torchrun's variables, TCPStore)
// Runs every collective with rank-dependent inputs and checks the exact
// results. Exit status: 0 all right, 1 a wrong value (printed with expected and
// actual), 2 bad usage, 3 an exception (printed).
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ccts/distributed/process_group.h"

using ccts::distributed::ProcessGroup;
using ccts::distributed::ReduceOp;

namespace {

int g_rank = -1;

// Exact comparison (dtype, shape, values) on the CPU.
void expect_equal(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
  const torch::Tensor a = actual.to(torch::kCPU);
  const torch::Tensor e = expected.to(torch::kCPU);
  if (a.scalar_type() == e.scalar_type() && a.sizes() == e.sizes() && torch::equal(a, e)) return;
  std::ostringstream out;
  out << "rank " << g_rank << ": " << what << " is wrong\n  expected " << e.scalar_type() << e.sizes()
      << ": " << e.flatten() << "\n  actual   " << a.scalar_type() << a.sizes() << ": " << a.flatten()
      << '\n';
  std::cerr << out.str();
  std::exit(1);
}

void expect_true(bool ok, const std::string& what) {
  if (ok) return;
  std::cerr << "rank " << g_rank << ": " << what << '\n';
  std::exit(1);
}

void run(ProcessGroup& pg, const torch::Device& device) {
  const int rank = pg.rank();
  const int n = pg.size();
  const double total = n * (n + 1) / 2.0;  // sum over ranks of (rank + 1)
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device);
  auto cpu_f32 = [](torch::Tensor t) { return t.to(torch::kCPU, torch::kFloat32); };

  // broadcast from rank 0 and from the last rank; a non-contiguous tensor too.
  torch::Tensor b = torch::full({3}, rank + 1.0, f32);
  pg.broadcast(b, 0);
  expect_equal(b, torch::ones({3}), "broadcast(src=0)");
  b = torch::full({3}, rank + 1.0, f32);
  pg.broadcast(b, n - 1);
  expect_equal(b, torch::full({3}, double(n)), "broadcast(src=last)");
  torch::Tensor bt = (torch::arange(6, f32).reshape({2, 3}) + 10.0 * rank).t();
  pg.broadcast(bt, 0);
  expect_equal(bt, torch::arange(6, torch::kFloat32).reshape({2, 3}).t(), "broadcast(non-contiguous)");

  // all_reduce: Sum (float and int64), Avg.
  torch::Tensor s = torch::arange(4, f32) * (rank + 1);
  pg.all_reduce(s, ReduceOp::Sum);
  expect_equal(s, torch::arange(4, torch::kFloat32) * total, "all_reduce(Sum)");
  torch::Tensor si = torch::arange(4, i64) * (rank + 1);
  pg.all_reduce(si);
  expect_equal(si, torch::arange(4, torch::kInt64) * static_cast<int64_t>(total), "all_reduce(Sum, int64)");
  torch::Tensor a = torch::arange(3, f32) * (rank + 1);
  pg.all_reduce(a, ReduceOp::Avg);
  expect_equal(a, torch::arange(3, torch::kFloat32) * total / n, "all_reduce(Avg)");
  torch::Tensor at = (torch::ones({2, 2}, f32) * (rank + 1)).t();
  pg.all_reduce(at, ReduceOp::Sum);
  expect_equal(at, torch::full({2, 2}, total), "all_reduce(non-contiguous)");

  // all_reduce_async: two collectives in flight, waited in reverse order.
  torch::Tensor x = torch::full({4}, rank + 1.0, f32);
  torch::Tensor y = torch::full({2}, 2.0 * (rank + 1), f32);
  auto wx = pg.all_reduce_async(x, ReduceOp::Sum);
  auto wy = pg.all_reduce_async(y, ReduceOp::Avg);
  wy->wait();
  wx->wait();
  expect_true(wx->is_completed() && wy->is_completed(), "all_reduce_async: not completed after wait()");
  expect_equal(x, torch::full({4}, total), "all_reduce_async(Sum)");
  expect_equal(y, torch::full({2}, 2.0 * total / n), "all_reduce_async(Avg)");

  // all_gather / all_gather_into: rank r contributes 10 r + [0, 1].
  const torch::Tensor mine = torch::arange(2, f32) + 10.0 * rank;
  auto gathered = pg.all_gather(mine);
  expect_true(static_cast<int>(gathered.size()) == n,
              "all_gather returned " + std::to_string(gathered.size()) + " tensors, expected " +
                  std::to_string(n));
  for (int r = 0; r < n; ++r) {
    expect_equal(gathered[r], torch::arange(2, torch::kFloat32) + 10.0 * r,
                 "all_gather[" + std::to_string(r) + "]");
  }
  std::vector<torch::Tensor> shards;
  for (int r = 0; r < n; ++r) shards.push_back(torch::arange(2, torch::kFloat32) + 10.0 * r);
  expect_equal(pg.all_gather_into(mine), torch::cat(shards), "all_gather_into");

  // reduce_scatter: input [2n, 3] = arange * (rank + 1); rank r gets rows 2r, 2r+1 of the sum.
  const torch::Tensor base = torch::arange(2 * n * 3, torch::kFloat32).reshape({2 * n, 3});
  const torch::Tensor input = base.to(device) * (rank + 1);
  expect_equal(pg.reduce_scatter(input, ReduceOp::Sum), base.narrow(0, 2 * rank, 2) * total,
               "reduce_scatter(Sum)");
  expect_equal(pg.reduce_scatter(input, ReduceOp::Avg), base.narrow(0, 2 * rank, 2) * total / n,
               "reduce_scatter(Avg)");
  expect_equal(cpu_f32(input), base * (rank + 1), "reduce_scatter's input (must be unchanged)");

  pg.barrier();

  // new_subgroups(2): consecutive pairs, ranks numbered within the pair, and
  // collectives that stay inside it (ranks 0-1 sum 1 + 2, ranks 2-3 sum 3 + 4).
  if (n % 2 == 0) {
    auto pair = pg.new_subgroup(2);
    expect_true(pair->rank() == rank % 2 && pair->size() == 2, "new_subgroup(2): rank and size within the pair");
    torch::Tensor s = torch::full({2}, rank + 1.0, f32);
    pair->all_reduce(s, ReduceOp::Sum);
    const double first = rank - rank % 2 + 1.0;
    expect_equal(cpu_f32(s), torch::full({2}, first + first + 1.0), "all_reduce within new_subgroup(2)");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  std::shared_ptr<ProcessGroup> pg;
  std::string backend = "gloo";
  try {
    if (mode == "file" && (argc == 5 || argc == 6)) {
      g_rank = std::stoi(argv[3]);
      if (argc == 6) backend = argv[5];
      pg = ProcessGroup::from_file_store(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), backend);
    } else if (mode == "env" && (argc == 2 || argc == 3)) {
      if (argc == 3) backend = argv[2];
      pg = ProcessGroup::from_env(backend);
    } else {
      std::cerr << "usage: pg_worker file <path> <rank> <world_size> [gloo|nccl] | pg_worker env [gloo|nccl]\n";
      return 2;
    }
    g_rank = pg->rank();
    torch::Device device(torch::kCPU);
    if (backend == "nccl") {
      device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(
                                               pg->rank() % static_cast<int>(torch::cuda::device_count())));
    }
    run(*pg, device);
  } catch (const c10::Error& e) {
    std::cerr << "rank " << g_rank << ": " << e.what_without_backtrace() << '\n';
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "rank " << g_rank << ": " << e.what() << '\n';
    return 3;
  }
  return 0;
}
