/*! tidarc emulator harness: runs one compiled attention variant (one launch; with splits > 1
    the last CTA of each row group merges the partials) on inputs read from a file, writes its
    outputs, and prints the emulator's findings as JSON lines. Built per variant by `tidarc
    emulate` with -DTIDARC_EMU_KERNEL=<symbol>. Its options and
    files are src/emulate/harness-protocol.ts's (harness_args.h); the arrays are
    tidarc_attention_args.h's, so neither is listed here. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "emu_runtime.h"
#include "harness_args.h"
#include "tidarc_abi.h"
#include "tidarc_attention_args.h"

extern "C" void TIDARC_EMU_KERNEL(TidarcAttentionArgs args);

namespace {

void run_main(void* p) { TIDARC_EMU_KERNEL(*static_cast<TidarcAttentionArgs*>(p)); }

// One array in guarded global memory: an input read from the file; the split counters zero (as
// every host passes them); anything else poisoned, so that an element the kernel never writes
// stays NaN.
void* fill(FILE* in, const char* name, size_t bytes, int role) {
  void* p = tidarc_emu::alloc_global(name, bytes);
  if (role == TIDARC_ARRAY_IN || role == TIDARC_ARRAY_CACHE) {
    if (std::fread(p, 1, bytes, in) != bytes) tidarc_harness::usage("tidarc-emu", std::string("input file too short reading ") + name);
  } else if (role == TIDARC_ARRAY_COUNTERS) {
    std::memset(p, 0, bytes);
  } else {
    std::memset(p, 0xff, bytes);
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const tidarc_harness::Args h = tidarc_harness::parse(argc, argv, "tidarc-emu");
  const TidarcAttentionDims d = tidarc_harness::dims(h);
  TidarcAttentionArgs args{};
  FILE* in = std::fopen(h.in_path.c_str(), "rb");
  if (!in) tidarc_harness::usage("tidarc-emu", "cannot open " + h.in_path);
#define TIDARC_FILL(field, js, type, role) \
  if ((role != TIDARC_ARRAY_SCRATCH && role != TIDARC_ARRAY_COUNTERS) || d.num_splits > 1) \
    args.field = static_cast<type*>(fill(in, #field, tidarc_attention_##field##_elements(&d) * sizeof(type), role));
  TIDARC_ATTENTION_ARRAYS(TIDARC_FILL)
#undef TIDARC_FILL
  std::fclose(in);
  tidarc_attention_set_sizes(&args, &d);
  args.num_threads = 1;

  using namespace tidarc_emu;
  if (h.block_order > 1) tidarc_harness::usage("tidarc-emu", "--block-order is 0 (x fastest) or 1 (reversed)");
  set_block_order(h.block_order == 1 ? BlockOrder::Reverse : BlockOrder::Forward);
  unsigned grid[3];
  tidarc_attention_grid(h.row_tiles, d.batch, d.kv_heads, d.num_splits, grid);  // the one rule of every launcher
  if (h.programmatic > 1) tidarc_harness::usage("tidarc-emu", "--programmatic is 0 (a plain launch) or 1 (a programmatic dependent launch)");
  const bool ok = launch(TIDARC_EMU_STR(TIDARC_EMU_KERNEL), dim3(grid[0], grid[1], grid[2]), dim3(h.threads), h.smem, run_main, &args, h.programmatic == 1);
  // The next launch (or graph replay) gets these counters as they are: each must be 0 again.
#define TIDARC_COUNTERS(field, js, type, role)                                                        \
  if (ok && role == TIDARC_ARRAY_COUNTERS && args.field != nullptr) {                                \
    const type* at = static_cast<const type*>(static_cast<const void*>(args.field));                 \
    for (size_t i = 0; i < tidarc_attention_##field##_elements(&d); ++i)                             \
      if (at[i] != 0) {                                                                              \
        add_finding("counter", #field "[" + std::to_string(i) + "] is " + std::to_string(at[i]) + " after the launch; every launch must leave it 0"); \
        break;                                                                                       \
      }                                                                                              \
  }
  TIDARC_ATTENTION_ARRAYS(TIDARC_COUNTERS)
#undef TIDARC_COUNTERS
  FILE* out = std::fopen(h.out_path.c_str(), "wb");
  if (!out) tidarc_harness::usage("tidarc-emu", "cannot write " + h.out_path);
#define TIDARC_WRITE(field, js, type, role) \
  if (role == TIDARC_ARRAY_OUT) std::fwrite(args.field, sizeof(type), tidarc_attention_##field##_elements(&d), out);
  TIDARC_ATTENTION_ARRAYS(TIDARC_WRITE)
#undef TIDARC_WRITE
  std::fclose(out);
  write_findings_json(stdout);
  std::printf("{\"done\":true,\"completed\":%s}\n", ok ? "true" : "false");
  free_globals();
  return 0;
}
