/*! tidarc emulator harness for the generated GEMMs (tidarc_gemm.cuh): runs one kernel of a
    GEMM source (split-K summed inside it, on split_counters zeroed once here) on inputs read
    from a file, `--launches L` times in a row (default 1; the outputs, partials and statistics
    poisoned again, or the old out restored, before each, the counters left as the last launch
    left them), writes the last launch's `out`, and prints the emulator's findings as JSON
    lines. Built per GEMM source with -DTIDARC_GEMM_KERNELS='X(sym_m1) X(sym_m20) ...';
    `--kernel` picks the kernel.
    Input file: x [x_rows, k] 16-bit, w [n, k] 16-bit, bias [n] f32 (--bias 1), row_ids [rows]
    int32 (--row-ids 1), then the outputs (--accumulate 1; otherwise they start as NaN): out
    [rows, seg1], out2 [rows, seg2 - seg1], out3 [rows, n - seg2] (--seg1/--seg2, default n: one
    out [rows, n]). The output file holds the outputs in the same order. --epilogue 1 (SwiGLU):
    one out [rows, n / 2] of 16-bit elements. --epilogue 2 (row statistics, -DTIDARC_GEMM_ROW_STATS=<symbol>): no
    out; the file holds tile_stats [rows, n tiles, 2] f32, tile_argmax [rows, n tiles] int32,
    row_argmax [rows] int32, row_max [rows] f32, row_lse [rows] f32. --programmatic 1: every launch
    is a programmatic dependent launch (PDL: a global access before a thread's grid_dependency_wait
    is a "pdl" finding).
    Fold-norms (tidarc_gemm_abi.h, a kernel compiled with Reduction::kNormOut / kRowScale):
    --norm-out 1 (the producer): norm_weight [n] f32 follows row_ids in the input file; the
    output file gets norm_out [rows, n] 16-bit and norm_sumsq [rows, ceil(n / 64)] f64 after
    everything else (both poisoned before each launch). --row-scale 1 (the consumer) with
    --norm-cols C and --norm-eps E (a float): row_sumsq [x_rows, ceil(C / 64)] f64 follows
    norm_weight's place in the input file. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "emu_runtime.h"
#include "tidarc_gemm_abi.h"

#define X(name) extern "C" void name(TidarcGemmArgs args);
TIDARC_GEMM_KERNELS
#undef X
#ifdef TIDARC_GEMM_ROW_STATS
extern "C" void TIDARC_GEMM_ROW_STATS(TidarcGemmArgs args);
#endif

namespace {

struct Entry {
  const char* name;
  void (*fn)(TidarcGemmArgs);
};
#define X(name) {#name, name},
const Entry kKernels[] = {TIDARC_GEMM_KERNELS};
#undef X

void (*g_kernel)(TidarcGemmArgs) = nullptr;
void run_main(void* p) { g_kernel(*static_cast<TidarcGemmArgs*>(p)); }
#ifdef TIDARC_GEMM_ROW_STATS
void run_row_stats(void* p) { TIDARC_GEMM_ROW_STATS(*static_cast<TidarcGemmArgs*>(p)); }
#endif

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "tidarc-emu-gemm: %s\nusage: --kernel SYM --rows R --x-rows XR --n N --k K --split S --block-m BM --n-tiles NT --threads T"
                " --smem BYTES --bias 0|1 --row-ids 0|1 --accumulate 0|1 [--seg1 S1 --seg2 S2] [--epilogue 0|1|2] [--launches L] [--programmatic 0|1]"
                " [--norm-out 0|1] [--row-scale 0|1 --norm-cols C --norm-eps E] --in FILE --out FILE\n",
               why.c_str());
  std::exit(2);
}

void read_exact(FILE* f, void* dst, size_t bytes, const char* what) {
  if (std::fread(dst, 1, bytes, f) != bytes) usage(std::string("input file too short reading ") + what);
}

}  // namespace

int main(int argc, char** argv) {
  std::string kernel, in_path, out_path;
  long rows = 0, x_rows = 0, n = 0, k = 0, split = 1, block_m = 0, n_tiles = 0, threads = 0, smem = 0, bias = 0, row_ids = 0, accumulate = 0, seg1 = -1, seg2 = -1, epilogue = 0, launches = 1,
       programmatic = 0, norm_out = 0, row_scale = 0, norm_cols = 0;
  float norm_eps = 0.0f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], v = argv[i + 1];
    if (key == "--norm-eps") {
      char* end = nullptr;
      norm_eps = std::strtof(v.c_str(), &end);
      if (v.empty() || *end != 0) usage("not a number: " + v);
      continue;
    }
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    const bool number = !v.empty() && *end == 0;
    if (key == "--kernel") kernel = v;
    else if (key == "--in") in_path = v;
    else if (key == "--out") out_path = v;
    else if (!number) usage("not an integer: " + v);
    else if (key == "--rows") rows = x;
    else if (key == "--x-rows") x_rows = x;
    else if (key == "--n") n = x;
    else if (key == "--k") k = x;
    else if (key == "--split") split = x;
    else if (key == "--block-m") block_m = x;
    else if (key == "--n-tiles") n_tiles = x;
    else if (key == "--threads") threads = x;
    else if (key == "--smem") smem = x;
    else if (key == "--bias") bias = x;
    else if (key == "--row-ids") row_ids = x;
    else if (key == "--accumulate") accumulate = x;
    else if (key == "--seg1") seg1 = x;
    else if (key == "--seg2") seg2 = x;
    else if (key == "--epilogue") epilogue = x;
    else if (key == "--launches") launches = x;
    else if (key == "--programmatic") programmatic = x;
    else if (key == "--norm-out") norm_out = x;
    else if (key == "--row-scale") row_scale = x;
    else if (key == "--norm-cols") norm_cols = x;
    else usage("unknown option " + key);
  }
  for (const Entry& e : kKernels)
    if (kernel == e.name) g_kernel = e.fn;
  if (!g_kernel) usage("unknown kernel '" + kernel + "'");
  if (rows < 1 || x_rows < 1 || n < 1 || k < 1 || split < 1 || block_m < 1 || n_tiles < 1 || threads < 1 || launches < 1 || programmatic < 0 || programmatic > 1 ||
      in_path.empty() || out_path.empty())
    usage("missing or invalid options");
  if (seg1 < 0) seg1 = n;
  if (seg2 < 0) seg2 = n;
  if (seg1 < 1 || seg1 > seg2 || seg2 > n) usage("segments need 0 < seg1 <= seg2 <= n");
  if (epilogue < 0 || epilogue > 2 || (epilogue != 0 && (accumulate || seg1 != n || seg2 != n))) usage("--epilogue 1 or 2 takes one out and no accumulate");
  const bool stats = epilogue == TIDARC_GEMM_EPILOGUE_ROW_STATS;
  if (norm_out && (epilogue != 0 || seg1 != n || seg2 != n)) usage("--norm-out 1 takes epilogue 0 and one out");
  if (row_scale && norm_cols < 1) usage("--row-scale 1 needs --norm-cols");

  using namespace tidarc_emu;
  const size_t out_elems = static_cast<size_t>(rows) * n;
  void* x = alloc_global("x", x_rows * k * 2);
  void* w = alloc_global("w", n * k * 2);
  auto* b = bias ? static_cast<float*>(alloc_global("bias", n * 4)) : nullptr;
  auto* ids = row_ids ? static_cast<int32_t*>(alloc_global("row_ids", rows * 4)) : nullptr;
  // Each output exactly its segment's size (guard pages right after): a column written to the
  // wrong segment runs past it.
  const bool swiglu = epilogue == TIDARC_GEMM_EPILOGUE_SWIGLU;
  const size_t widths[3] = {stats ? 0 : static_cast<size_t>(swiglu ? n / 2 : seg1), static_cast<size_t>(seg2 - seg1), static_cast<size_t>(n - seg2)};
  const size_t elem = swiglu ? 2 : 4;  // SwiGLU writes the 16-bit dtype
  const char* names[3] = {"out", "out2", "out3"};
  void* outs[3] = {nullptr, nullptr, nullptr};
  for (int i = 0; i < 3; ++i)
    if (widths[i] > 0) outs[i] = alloc_global(names[i], rows * widths[i] * elem);
  auto* ws = split > 1 ? static_cast<float*>(alloc_global("workspace", split * out_elems * 4)) : nullptr;
  // One arrival counter per output tile, zeroed once as the runtime does: each launch must leave them 0.
  const size_t tiles_mn = static_cast<size_t>((rows + block_m - 1) / block_m) * n_tiles;
  auto* counters = split > 1 ? static_cast<int32_t*>(alloc_global("split_counters", tiles_mn * 4)) : nullptr;
  if (counters) std::memset(counters, 0, tiles_mn * 4);
  // Row statistics: each array exactly its size, poisoned like the outputs.
  const size_t tiles = static_cast<size_t>(rows) * n_tiles;
  auto* tile_stats = stats ? static_cast<float*>(alloc_global("tile_stats", tiles * 8)) : nullptr;
  auto* tile_argmax = stats ? static_cast<int32_t*>(alloc_global("tile_argmax", tiles * 4)) : nullptr;
  auto* row_argmax = stats ? static_cast<int32_t*>(alloc_global("row_argmax", rows * 4)) : nullptr;
  auto* row_max = stats ? static_cast<float*>(alloc_global("row_max", rows * 4)) : nullptr;
  auto* row_lse = stats ? static_cast<float*>(alloc_global("row_lse", rows * 4)) : nullptr;
  // Fold-norms: the producer's gamma and outputs, the consumer's chunk sums (each exactly its size).
  const size_t sums_row = static_cast<size_t>((n + 63) / 64), src_chunks = static_cast<size_t>((norm_cols + 63) / 64);
  auto* norm_weight = norm_out ? static_cast<float*>(alloc_global("norm_weight", n * 4)) : nullptr;
  void* norm_out16 = norm_out ? alloc_global("norm_out", out_elems * 2) : nullptr;
  auto* norm_sumsq = norm_out ? static_cast<double*>(alloc_global("norm_sumsq", rows * sums_row * 8)) : nullptr;
  auto* row_sumsq = row_scale ? static_cast<double*>(alloc_global("row_sumsq", x_rows * src_chunks * 8)) : nullptr;
  FILE* in = std::fopen(in_path.c_str(), "rb");
  if (!in) usage("cannot open " + in_path);
  read_exact(in, x, x_rows * k * 2, "x");
  read_exact(in, w, n * k * 2, "w");
  if (b) read_exact(in, b, n * 4, "bias");
  if (ids) read_exact(in, ids, rows * 4, "row_ids");
  if (norm_weight) read_exact(in, norm_weight, n * 4, "norm_weight");
  if (row_sumsq) read_exact(in, row_sumsq, x_rows * src_chunks * 8, "row_sumsq");
  std::string old[3];  // the old out of an accumulating launch, restored before each launch
  for (int i = 0; i < 3; ++i) {
    if (!outs[i] || !accumulate) continue;
    old[i].resize(rows * widths[i] * elem);
    read_exact(in, old[i].data(), old[i].size(), names[i]);
  }
  std::fclose(in);

  TidarcGemmArgs args{x, w, b, ids, outs[0], static_cast<float*>(outs[1]), static_cast<float*>(outs[2]), ws, tile_stats, tile_argmax, row_argmax, row_max, row_lse,
                      static_cast<int32_t>(rows), static_cast<int32_t>(accumulate), static_cast<int32_t>(seg1), static_cast<int32_t>(seg2),
                      static_cast<int32_t>(epilogue), counters, norm_weight, norm_out16, norm_sumsq, row_sumsq,
                      static_cast<int32_t>(src_chunks), static_cast<int32_t>(norm_cols), norm_eps};
  bool ok = true;
  for (long l = 0; ok && l < launches; ++l) {
    // Poison: an output, partial or statistic this launch never writes stays NaN.
    for (int i = 0; i < 3; ++i) {
      if (!outs[i]) continue;
      if (accumulate) std::memcpy(outs[i], old[i].data(), old[i].size());
      else std::memset(outs[i], 0xff, rows * widths[i] * elem);
    }
    if (ws) std::memset(ws, 0xff, split * out_elems * 4);
    if (norm_out) std::memset(norm_out16, 0xff, out_elems * 2), std::memset(norm_sumsq, 0xff, rows * sums_row * 8);
    if (stats) {
      std::memset(tile_stats, 0xff, tiles * 8), std::memset(tile_argmax, 0xff, tiles * 4);
      std::memset(row_argmax, 0xff, rows * 4), std::memset(row_max, 0xff, rows * 4), std::memset(row_lse, 0xff, rows * 4);
    }
    ok = launch(kernel.c_str(), dim3((rows + block_m - 1) / block_m, n_tiles, split), dim3(threads), smem, run_main, &args, programmatic == 1);
    if (ok && stats) {
#ifdef TIDARC_GEMM_ROW_STATS
      ok = launch(TIDARC_EMU_STR(TIDARC_GEMM_ROW_STATS), dim3((rows + 7) / 8), dim3(256), 0, run_row_stats, &args, programmatic == 1);
#else
      usage("--epilogue 2 but the source has no row statistics kernel");
#endif
    }
  }
  FILE* f = std::fopen(out_path.c_str(), "wb");
  if (!f) usage("cannot write " + out_path);
  for (int i = 0; i < 3; ++i)
    if (outs[i]) std::fwrite(outs[i], 1, rows * widths[i] * elem, f);
  if (stats) {
    std::fwrite(tile_stats, 1, tiles * 8, f), std::fwrite(tile_argmax, 1, tiles * 4, f);
    std::fwrite(row_argmax, 1, rows * 4, f), std::fwrite(row_max, 1, rows * 4, f), std::fwrite(row_lse, 1, rows * 4, f);
  }
  if (norm_out) std::fwrite(norm_out16, 1, out_elems * 2, f), std::fwrite(norm_sumsq, 1, rows * sums_row * 8, f);
  std::fclose(f);
  write_findings_json(stdout);
  std::printf("{\"done\":true,\"completed\":%s}\n", ok ? "true" : "false");
  free_globals();
  return 0;
}
