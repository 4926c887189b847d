#pragma once
// What the benchmark programs share: their main() (usage errors exit 2,
// failures 1, each with the program's name), reading an option's value,
// LibTorch's version, and this process's resident memory for the peak
// measurements: VmRSS now, VmHWM (the peak since the last reset), the reset.
#include <malloc.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include <c10/util/Exception.h>
#include <torch/version.h>

namespace ccts::bench {

// The value after argv[i] (i then names it), or invalid_argument.
inline std::string option_value(int& i, int argc, char** argv) {
  if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
  return argv[++i];
}

// The options every benchmark program takes; each sets its own defaults.
struct CommonOptions {
  std::string fixtures = "fixtures";
  int warmup = 1;
  int steps = 5;
  int threads = 1;
};

// Reads argv[i] into `o` when it is one of CommonOptions' (i then names its
// value); false when it is not.
inline bool read_common_option(CommonOptions& o, int& i, int argc, char** argv) {
  const std::string arg = argv[i];
  if (arg == "--fixtures") {
    o.fixtures = option_value(i, argc, argv);
  } else if (arg == "--warmup") {
    o.warmup = std::stoi(option_value(i, argc, argv));
  } else if (arg == "--steps") {
    o.steps = std::stoi(option_value(i, argc, argv));
  } else if (arg == "--threads") {
    o.threads = std::stoi(option_value(i, argc, argv));
  } else {
    return false;
  }
  return true;
}

// argv into an O (a CommonOptions): the common options, then
// `own(o, arg, value)` for the program's own, which returns false for an
// argument it does not know (then invalid_argument); `value()` reads the
// argument's value. The bounds are the program's to check.
template <class O, class Own>
O read_options(int argc, char** argv, Own own) {
  O o;
  for (int i = 1; i < argc; ++i) {
    if (read_common_option(o, i, argc, argv)) continue;
    const std::string arg = argv[i];
    if (!own(o, arg, [&] { return option_value(i, argc, argv); })) {
      throw std::invalid_argument("unknown argument '" + arg + "'");
    }
  }
  return o;
}

// main(): `parse(argc, argv)` then `run(options)`, errors to stderr.
template <class Parse, class Run>
int bench_main(const char* program, const char* usage, int argc, char** argv, Parse parse, Run run) {
  decltype(parse(argc, argv)) options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n" << usage;
    return 2;
  }
  try {
    return run(options);
  } catch (const c10::Error& e) {
    std::cerr << program << ": " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
  }
  return 1;
}

inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// A field of /proc/self/status in bytes (VmRSS, VmHWM), or -1.
inline std::int64_t status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  return -1;
}

// Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
inline bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// Every block of 64 KiB or more gets its own mapping, unmapped on free (a
// fixed threshold: glibc no longer raises it), for the whole run: the RSS
// then follows what is alive. Call before allocating anything large.
inline void rss_follows_allocations() { mallopt(M_MMAP_THRESHOLD, 64 * 1024); }

}  // namespace ccts::bench
