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
#include "harness_args.h"
#include "tidarc_abi.h"

extern "C" void TIDARC_EMU_KERNEL(TidarcAttentionArgs args);
extern "C" void TIDARC_EMU_COMBINE(TidarcAttentionArgs args);

namespace {

void run_main(void* p) { TIDARC_EMU_KERNEL(*static_cast<TidarcAttentionArgs*>(p)); }
void run_combine(void* p) { TIDARC_EMU_COMBINE(*static_cast<TidarcAttentionArgs*>(p)); }

void read_exact(FILE* f, void* dst, size_t bytes, const char* what) {
  if (std::fread(dst, 1, bytes, f) != bytes) tidarc_harness::usage("tidarc-emu", (std::string("input file too short reading ") + what).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const tidarc_harness::Args h = tidarc_harness::parse(argc, argv, "tidarc-emu");
  const long batch = h.batch, capacity = h.capacity, splits = h.splits, steps = h.steps, qheads = h.qheads, kvheads = h.kvheads,
             dim = h.dim, row_tiles = h.row_tiles, threads = h.threads, smem = h.smem;
  const std::vector<int32_t>& prefix = h.prefix;
  const std::string &in_path = h.in_path, &out_path = h.out_path;

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
  if (!in) tidarc_harness::usage("tidarc-emu", ("cannot open " + in_path).c_str());
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
  if (!out) tidarc_harness::usage("tidarc-emu", ("cannot write " + out_path).c_str());
  std::fwrite(o, 1, rows * dim * 2, out);
  std::fwrite(lse, 1, rows * 4, out);
  std::fclose(out);
  write_findings_json(stdout);
  std::printf("{\"done\":true,\"completed\":%s}\n", ok ? "true" : "false");
  free_globals();
  return 0;
}
