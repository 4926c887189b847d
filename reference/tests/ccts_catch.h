#pragma once
// Catch2 3 (Debian 13) or 2 (Debian 12): one include for every unit test, and
// the names the tests use (Contains, StartsWith, Approx) in both.
#if CCTS_CATCH2_MAJOR >= 3
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
namespace ccts_catch {
inline auto Contains(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
inline auto StartsWith(const std::string& text) { return Catch::Matchers::StartsWith(text); }
using Catch::Approx;
}  // namespace ccts_catch
#else
#include <catch2/catch.hpp>
namespace ccts_catch {
using Catch::Contains;
using Catch::StartsWith;
using Catch::Detail::Approx;
}  // namespace ccts_catch
#endif
