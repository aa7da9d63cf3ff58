/*! tidarc emulator harness: runs one compiled attention variant (its main kernel, then the
    split-KV combine when splits > 1) on inputs read from a file, writes its outputs, and
    prints the emulator's findings as JSON lines. Built per variant by `tidarc emulate`
    with -DTIDARC_EMU_KERNEL=<symbol> -DTIDARC_EMU_COMBINE=<symbol>_combine. Its options and
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
extern "C" void TIDARC_EMU_COMBINE(TidarcAttentionArgs args);

namespace {

void run_main(void* p) { TIDARC_EMU_KERNEL(*static_cast<TidarcAttentionArgs*>(p)); }
void run_combine(void* p) { TIDARC_EMU_COMBINE(*static_cast<TidarcAttentionArgs*>(p)); }

// One array in guarded global memory: an input read from the file; anything else poisoned, so
// that an element the kernels never write stays NaN.
void* fill(FILE* in, const char* name, size_t bytes, int role) {
  void* p = tidarc_emu::alloc_global(name, bytes);
  if (role == TIDARC_ARRAY_IN || role == TIDARC_ARRAY_CACHE) {
    if (std::fread(p, 1, bytes, in) != bytes) tidarc_harness::usage("tidarc-emu", std::string("input file too short reading ") + name);
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
  if (role != TIDARC_ARRAY_SCRATCH || d.num_splits > 1) \
    args.field = static_cast<type*>(fill(in, #field, tidarc_attention_##field##_elements(&d) * sizeof(type), role));
  TIDARC_ATTENTION_ARRAYS(TIDARC_FILL)
#undef TIDARC_FILL
  std::fclose(in);
  tidarc_attention_set_sizes(&args, &d);
  args.num_threads = 1;

  using namespace tidarc_emu;
  const size_t rows = d.batch * d.n * d.q_heads;
  bool ok = launch(TIDARC_EMU_STR(TIDARC_EMU_KERNEL), dim3(h.row_tiles, d.batch * d.kv_heads, d.num_splits), dim3(h.threads), h.smem, run_main, &args);
  if (ok && d.num_splits > 1) {
    ok = launch(TIDARC_EMU_STR(TIDARC_EMU_COMBINE), dim3((rows + h.combine_rows - 1) / h.combine_rows), dim3(h.combine_block), 0, run_combine, &args);
  }
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
