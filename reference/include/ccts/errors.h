#pragma once
// Errors raised by the reference's APIs. Each carries the suite's neutral error
// kind (spec/ADAPTERS.md, "Error kinds") beside PyTorch's exact message, so the
// adapter reports kinds without parsing messages.
#include <stdexcept>
#include <string>

namespace ccts {

class ApiError : public std::runtime_error {
 public:
  ApiError(std::string kind, const std::string& message)
      : std::runtime_error(message), kind_(std::move(kind)) {}
  const std::string& kind() const noexcept { return kind_; }

 private:
  std::string kind_;
};

// PyTorch raises AssertionError where an API's precondition is violated
// (e.g. contract's "already applied" check).
class AssertionError : public ApiError {
 public:
  explicit AssertionError(const std::string& message) : ApiError("assertion", message) {}
  AssertionError(std::string kind, const std::string& message) : ApiError(std::move(kind), message) {}
};

// A feature this implementation does not provide; reported as `unsupported`.
class Unsupported : public ApiError {
 public:
  explicit Unsupported(const std::string& message) : ApiError("unsupported", message) {}
};

}  // namespace ccts
