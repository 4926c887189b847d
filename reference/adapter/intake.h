#pragma once
// The reference adapter's message intake (spec/ADAPTERS.md): one line of
// stdin in, the reply to send out, and whether the adapter then exits. Kept
// apart from main() so that the fuzz target (reference/tests/fuzz/) drives
// the same code the adapter runs, without a process per input.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "case_interpreter.h"

namespace ccts::adapter {

constexpr int kProtocolVersion = 2;

struct Reply {
  json message;
  // Set when the adapter exits after sending the message: 0 after bye, 2 for
  // a message it cannot take, 3 when the process group cannot be made.
  std::optional<int> exit_code;
};

class Intake {
 public:
  // Makes the session a hello asks for (backend, device).
  using SessionFactory =
      std::function<std::shared_ptr<Session>(const std::string& backend, const std::string& device)>;

  explicit Intake(SessionFactory make_session);

  // The reply to one line; none for a blank line. Never throws: whatever the
  // line holds, the reply is a protocol error or the message's reply.
  std::optional<Reply> handle(const std::string& line);

 private:
  Reply hello(const json& message);
  Reply run(const json& message);

  SessionFactory make_session_;
  std::shared_ptr<Session> session_;
};

}  // namespace ccts::adapter
