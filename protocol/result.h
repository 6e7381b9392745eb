// Result<T>: a value or an Error, shaped like std::expected (which C++20 lacks).
// Success costs nothing beyond the value; errors carry a SQLSTATE so the proxy
// can turn them straight into an ErrorResponse.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace pgmux::protocol {

struct Error {
  std::string sqlstate;  // Five characters, see sqlstate.h. Empty when not applicable.
  std::string message;   // A sentence for a person: what was wrong.
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok().
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // REQUIRES: !ok().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;

inline Error make_error(std::string sqlstate, std::string message) {
  return Error{std::move(sqlstate), std::move(message)};
}

}  // namespace pgmux::protocol
