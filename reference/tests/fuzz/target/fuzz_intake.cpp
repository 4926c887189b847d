// libFuzzer target: the reference adapter's intake and case interpreter
// (reference/adapter/intake.h, case_interpreter.cpp). An input is what a
// runner could write to a rank's stdin: lines of JSON, here random or mutated
// from the suite's own run messages (seeds.py). Whatever they hold, each reply
// must be one of the protocol's messages, never a crash, a hang or an escaped
// exception; libFuzzer reports those, and __builtin_trap() a wrong reply.
// Half of the mutations are libFuzzer's own, on bytes; the other half parse
// the lines and edit the JSON (replace, delete, duplicate or move a node), so
// that well-formed but wrong cases reach deep into the interpreter.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "intake.h"

namespace {

using ccts::adapter::Intake;
using ccts::adapter::json;
using ccts::adapter::Session;

// A free TCP port for the one-rank group's store.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), size) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) != 0) {
    std::abort();
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// One Gloo session for the whole run (a process group per input would spend
// the run in rendezvous); a hello for anything else gets a session without a
// group, as the adapter makes, which answers every case unsupported.
// Never destroyed: at exit it would outlive the default-group slot it clears.
std::shared_ptr<Session> make_session(const std::string& backend, const std::string& device) {
  static auto* gloo = new std::shared_ptr<Session>();
  if (backend == "gloo" && device == "cpu") {
    if (!*gloo) *gloo = std::make_shared<Session>(0, 1, backend, device);
    return *gloo;
  }
  return std::make_shared<Session>(0, 1, backend, device);
}

void check_reply(const json& reply) {
  const std::string type = reply.value("type", "");
  const bool known = type == "hello" || type == "bye" ||
                     (type == "error" && reply.contains("message") && reply["message"].is_string()) ||
                     (type == "result" && reply.contains("observations") && reply.contains("error") &&
                      reply["case"].is_string());
  if (!known) __builtin_trap();
  // What main() writes: invalid UTF-8 from the input is replaced, never thrown.
  (void)reply.dump(-1, ' ', false, json::error_handler_t::replace);
}

void collect(json& node, std::vector<json*>& nodes) {
  nodes.push_back(&node);
  if (node.is_structured()) {
    for (auto& child : node) collect(child, nodes);
  }
}

// Values at the edges of what a field may hold.
json edge_value(std::mt19937& rng) {
  static const json values = json::parse(
      R"([0, 1, -1, 2, 3, 4, 1000000, -1000000, 2147483648, 9223372036854775807, -9223372036854775808,
          18446744073709551615, 0.5, -0.0, 1e308, -1e308, 1e-320, "", "x", "rank", "world_size", "step",
          true, false, null, [], {}, [0], [[]], {"": null}])");
  return values[rng() % values.size()];
}

// One edit of one JSON document, in place.
void mutate_json(json& doc, std::mt19937& rng) {
  std::vector<json*> nodes;
  collect(doc, nodes);
  json& node = *nodes[rng() % nodes.size()];
  switch (rng() % 6) {
    case 0:
      node = edge_value(rng);
      break;
    case 1:  // delete a child
      if (node.is_array() && !node.empty()) node.erase(node.begin() + static_cast<long>(rng() % node.size()));
      if (node.is_object() && !node.empty()) node.erase(std::next(node.begin(), static_cast<long>(rng() % node.size())).key());
      break;
    case 2:  // duplicate a child
      if (node.is_array() && !node.empty()) node.push_back(node[rng() % node.size()]);
      break;
    case 3:  // another node's value here (a step body elsewhere, a fixture's member, ...)
      node = *nodes[rng() % nodes.size()];
      break;
    case 4:  // a number nudged
      if (node.is_number_integer()) node = node.get<std::int64_t>() + static_cast<std::int64_t>(rng() % 5) - 2;
      if (node.is_number_float()) node = node.get<double>() * -10.0;
      break;
    default: {  // a string that occurs elsewhere in the document (names, steps, kinds)
      std::vector<const json*> strings;
      for (const json* n : nodes) {
        if (n->is_string()) strings.push_back(n);
      }
      if (!strings.empty()) node = *strings[rng() % strings.size()];
    }
  }
}

}  // namespace

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  std::mt19937 rng(seed);
  if (rng() % 2 == 0) return LLVMFuzzerMutate(data, size, max_size);
  std::vector<json> lines;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t start = 0;
  while (start < input.size()) {
    std::size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    json line = json::parse(input.substr(start, end - start), nullptr, false);
    if (line.is_discarded()) return LLVMFuzzerMutate(data, size, max_size);
    lines.push_back(std::move(line));
    start = end + 1;
  }
  if (lines.empty()) return LLVMFuzzerMutate(data, size, max_size);
  // The run message most of the time: it holds the case.
  std::size_t pick = rng() % lines.size();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].is_object() && lines[i].value("type", json()) == "run" && rng() % 4 != 0) pick = i;
  }
  mutate_json(lines[pick], rng);
  std::string out;
  for (const json& line : lines) out += line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "1", 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(free_port()).c_str(), 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Intake intake(make_session);
  std::size_t start = 0;
  while (start <= input.size()) {
    std::size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    const auto reply = intake.handle(std::string(input.substr(start, end - start)));
    if (reply) {
      check_reply(reply->message);
      if (reply->exit_code) break;  // the adapter would exit here
    }
    start = end + 1;
  }
  return 0;
}
