/*! tidarc harness options, shared by the emulator harness (emu_main.cpp) and its GPU twin
    (runtime/gpu/gpu_main.cu) so both speak exactly one protocol. Plain C++: nvcc and g++. */
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace tidarc_harness {

struct Args {
  long batch = 0, capacity = -1, splits = 1, steps = 0, qheads = 0, kvheads = 0, dim = 0, row_tiles = 0, threads = 0, smem = 0;
  std::vector<int32_t> prefix;
  std::string in_path, out_path;
};

[[noreturn]] inline void usage(const char* program, const char* why) {
  std::fprintf(stderr,
               "%s: %s\nusage: --batch B --capacity C --splits S --prefix L0,L1,... --steps N --qheads H"
               " --kvheads H --dim D --row-tiles R --threads T --smem BYTES --in FILE --out FILE\n",
               program, why);
  std::exit(2);
}

inline Args parse(int argc, char** argv, const char* program) {
  auto number = [&](const std::string& v) {
    char* end = nullptr;
    long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end) usage(program, ("not an integer: " + v).c_str());
    return x;
  };
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") a.batch = number(v);
    else if (k == "--capacity") a.capacity = number(v);
    else if (k == "--splits") a.splits = number(v);
    else if (k == "--steps") a.steps = number(v);
    else if (k == "--qheads") a.qheads = number(v);
    else if (k == "--kvheads") a.kvheads = number(v);
    else if (k == "--dim") a.dim = number(v);
    else if (k == "--row-tiles") a.row_tiles = number(v);
    else if (k == "--threads") a.threads = number(v);
    else if (k == "--smem") a.smem = number(v);
    else if (k == "--in") a.in_path = v;
    else if (k == "--out") a.out_path = v;
    else if (k == "--prefix") {
      for (size_t pos = 0; pos <= v.size();) {
        size_t comma = v.find(',', pos);
        if (comma == std::string::npos) comma = v.size();
        a.prefix.push_back(static_cast<int32_t>(number(v.substr(pos, comma - pos))));
        pos = comma + 1;
      }
    } else usage(program, ("unknown option " + k).c_str());
  }
  if (a.batch < 1 || a.capacity < 0 || a.splits < 1 || a.steps < 1 || a.qheads < 1 || a.kvheads < 1 || a.dim < 1 || a.row_tiles < 1 ||
      a.threads < 1 || static_cast<long>(a.prefix.size()) != a.batch || a.in_path.empty() || a.out_path.empty())
    usage(program, "missing or invalid options");
  return a;
}

}  // namespace tidarc_harness
