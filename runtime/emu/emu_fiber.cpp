/*! tidarc emulator: fiber switching (see emu_fiber.h). */
#include "emu_fiber.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)

extern "C" void tidarc_emu_switch(void** save_sp, void* load_sp);
extern "C" void tidarc_emu_trampoline();

// Stack frame of a suspended fiber, from its saved sp upwards:
//   [0] mxcsr (4 bytes) + x87 control word (2 bytes), [8] r15, [16] r14, [24] r13,
//   [32] r12, [40] rbx, [48] rbp, [56] return address.
asm(R"(
  .text
  .globl tidarc_emu_switch
  .type tidarc_emu_switch, @function
tidarc_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tidarc_emu_switch, .-tidarc_emu_switch

  .globl tidarc_emu_trampoline
  .type tidarc_emu_trampoline, @function
tidarc_emu_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size tidarc_emu_trampoline, .-tidarc_emu_trampoline
)");

namespace tidarc_emu {

void fiber_init(FiberContext& fiber, void* stack, size_t size, void (*entry)(void*), void* arg) {
  auto top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top - 64);  // 16-aligned: entry sees rsp % 16 == 8
  std::memset(frame, 0, 64);
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(reinterpret_cast<char*>(frame), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(frame) + 4, &fpucw, 2);
  frame[3] = reinterpret_cast<uint64_t>(entry);  // r13
  frame[4] = reinterpret_cast<uint64_t>(arg);    // r12
  frame[7] = reinterpret_cast<uint64_t>(&tidarc_emu_trampoline);
  fiber.sp = frame;
}

void fiber_switch(FiberContext& from, FiberContext& to) { tidarc_emu_switch(&from.sp, to.sp); }
void fiber_release(FiberContext&) {}

}  // namespace tidarc_emu

#else  // portable fallback

#include <ucontext.h>

namespace tidarc_emu {

static void ucontext_entry(unsigned lo, unsigned hi, unsigned elo, unsigned ehi) {
  auto arg = reinterpret_cast<void*>((static_cast<uintptr_t>(hi) << 32) | lo);
  auto entry = reinterpret_cast<void (*)(void*)>((static_cast<uintptr_t>(ehi) << 32) | elo);
  entry(arg);
}

void fiber_init(FiberContext& fiber, void* stack, size_t size, void (*entry)(void*), void* arg) {
  auto* ctx = new ucontext_t;
  getcontext(ctx);
  ctx->uc_stack.ss_sp = stack;
  ctx->uc_stack.ss_size = size;
  ctx->uc_link = nullptr;
  auto a = reinterpret_cast<uintptr_t>(arg);
  auto e = reinterpret_cast<uintptr_t>(entry);
  makecontext(ctx, reinterpret_cast<void (*)()>(ucontext_entry), 4, unsigned(a), unsigned(a >> 32), unsigned(e), unsigned(e >> 32));
  fiber.uctx = ctx;
}

void fiber_switch(FiberContext& from, FiberContext& to) {
  if (!from.uctx) from.uctx = new ucontext_t;
  swapcontext(static_cast<ucontext_t*>(from.uctx), static_cast<ucontext_t*>(to.uctx));
}

void fiber_release(FiberContext& fiber) {
  delete static_cast<ucontext_t*>(fiber.uctx);
  fiber.uctx = nullptr;
}

}  // namespace tidarc_emu

#endif
