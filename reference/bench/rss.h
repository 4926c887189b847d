#pragma once
// Resident memory of this process, for the benchmarks' peak measurements:
// VmRSS now, VmHWM (the peak since the last reset), and the reset.
#include <malloc.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace ccts::bench {

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
