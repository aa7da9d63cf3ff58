/*! tidarc emulator harness: runs one compiled attention variant (its main kernel, then the
    split-KV combine when splits > 1) on inputs read from a file, writes O and lse, and
    prints the emulator's findings as JSON lines. Built per variant by `tidarc emulate`
    with -DTIDARC_EMU_KERNEL=<symbol> -DTIDARC_EMU_COMBINE=<symbol>_combine. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "emu_runtime.h"
#include "tidarc_abi.h"

extern "C" void TIDARC_EMU_KERNEL(TidarcAttentionArgs args);
extern "C" void TIDARC_EMU_COMBINE(TidarcAttentionArgs args);

namespace {

void run_main(void* p) { TIDARC_EMU_KERNEL(*static_cast<TidarcAttentionArgs*>(p)); }
void run_combine(void* p) { TIDARC_EMU_COMBINE(*static_cast<TidarcAttentionArgs*>(p)); }

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tidarc-emu: %s\nusage: emu --batch B --capacity C --splits S --prefix L0,L1,... --steps N --qheads H"
               " --kvheads H --dim D --row-tiles R --threads T --smem BYTES --in FILE --out FILE\n",
               why);
  std::exit(2);
}

long arg_long(const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end) usage(("not an integer: " + v).c_str());
  return x;
}

void read_exact(FILE* f, void* dst, size_t bytes, const char* what) {
  if (std::fread(dst, 1, bytes, f) != bytes) usage((std::string("input file too short reading ") + what).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  long batch = 0, capacity = -1, splits = 1, steps = 0, qheads = 0, kvheads = 0, dim = 0, row_tiles = 0, threads = 0, smem = 0;
  std::vector<int32_t> prefix;
  std::string in_path, out_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") batch = arg_long(v);
    else if (k == "--capacity") capacity = arg_long(v);
    else if (k == "--splits") splits = arg_long(v);
    else if (k == "--steps") steps = arg_long(v);
    else if (k == "--qheads") qheads = arg_long(v);
    else if (k == "--kvheads") kvheads = arg_long(v);
    else if (k == "--dim") dim = arg_long(v);
    else if (k == "--row-tiles") row_tiles = arg_long(v);
    else if (k == "--threads") threads = arg_long(v);
    else if (k == "--smem") smem = arg_long(v);
    else if (k == "--in") in_path = v;
    else if (k == "--out") out_path = v;
    else if (k == "--prefix") {
      for (size_t pos = 0; pos <= v.size();) {
        size_t comma = v.find(',', pos);
        if (comma == std::string::npos) comma = v.size();
        prefix.push_back(static_cast<int32_t>(arg_long(v.substr(pos, comma - pos))));
        pos = comma + 1;
      }
    } else usage(("unknown option " + k).c_str());
  }
  if (batch < 1 || capacity < 0 || splits < 1 || steps < 1 || qheads < 1 || kvheads < 1 || dim < 1 || row_tiles < 1 || threads < 1 ||
      static_cast<long>(prefix.size()) != batch || in_path.empty() || out_path.empty())
    usage("missing or invalid options");

  const size_t q_elems = batch * steps * qheads * dim, cache_elems = batch * kvheads * capacity * dim, step_elems = batch * steps * kvheads * dim;
  const size_t rows = batch * steps * qheads;
  using namespace tidarc_emu;
  auto* q = static_cast<uint16_t*>(alloc_global("q", q_elems * 2));
  auto* kc = static_cast<uint16_t*>(alloc_global("k_cache", cache_elems * 2));
  auto* vc = static_cast<uint16_t*>(alloc_global("v_cache", cache_elems * 2));
  auto* ks = static_cast<uint16_t*>(alloc_global("k_step", step_elems * 2));
  auto* vs = static_cast<uint16_t*>(alloc_global("v_step", step_elems * 2));
  auto* pl = static_cast<int32_t*>(alloc_global("prefix_len", batch * 4));
  auto* o = static_cast<uint16_t*>(alloc_global("o", rows * dim * 2));
  auto* lse = static_cast<float*>(alloc_global("lse", rows * 4));
  float* ws = splits > 1 ? static_cast<float*>(alloc_global("workspace", splits * rows * (dim + 1) * 4)) : nullptr;
  FILE* in = std::fopen(in_path.c_str(), "rb");
  if (!in) usage(("cannot open " + in_path).c_str());
  read_exact(in, q, q_elems * 2, "q");
  read_exact(in, kc, cache_elems * 2, "k_cache");
  read_exact(in, vc, cache_elems * 2, "v_cache");
  read_exact(in, ks, step_elems * 2, "k_step");
  read_exact(in, vs, step_elems * 2, "v_step");
  std::fclose(in);
  std::memcpy(pl, prefix.data(), batch * 4);
  // Poison every output: an element the kernels never write stays NaN.
  std::memset(o, 0xff, rows * dim * 2);
  std::memset(lse, 0xff, rows * 4);
  if (ws) std::memset(ws, 0xff, splits * rows * (dim + 1) * 4);

  TidarcAttentionArgs args{q, kc, vc, ks, vs, pl, o, lse, ws, static_cast<int32_t>(batch), static_cast<int32_t>(capacity), static_cast<int32_t>(splits), 1};
  bool ok = launch(TIDARC_EMU_STR(TIDARC_EMU_KERNEL), dim3(row_tiles, batch * kvheads, splits), dim3(threads), smem, run_main, &args);
  if (ok && splits > 1) {
    ok = launch(TIDARC_EMU_STR(TIDARC_EMU_COMBINE), dim3((rows + 3) / 4), dim3(128), 0, run_combine, &args);
  }
  FILE* out = std::fopen(out_path.c_str(), "wb");
  if (!out) usage(("cannot write " + out_path).c_str());
  std::fwrite(o, 1, rows * dim * 2, out);
  std::fwrite(lse, 1, rows * 4, out);
  std::fclose(out);
  write_findings_json(stdout);
  std::printf("{\"done\":true,\"completed\":%s}\n", ok ? "true" : "false");
  free_globals();
  return 0;
}
