/*! tidarc emulator: fibers. One CUDA thread = one fiber with its own stack; a switch
    saves the callee-saved registers and the FP control words (x86-64: ~10 ns, a few
    instructions; elsewhere ucontext, which is correct but makes a syscall per switch). */
#pragma once
#include <cstddef>

namespace tidarc_emu {

struct FiberContext {
  void* sp = nullptr;  // x86-64: saved stack pointer
  void* uctx = nullptr;  // other targets: a ucontext_t
};

/** Prepares `fiber` to run entry(arg) on the stack [stack, stack + size). */
void fiber_init(FiberContext& fiber, void* stack, size_t size, void (*entry)(void*), void* arg);
/** Saves the running context into `from` and resumes `to`. */
void fiber_switch(FiberContext& from, FiberContext& to);
void fiber_release(FiberContext& fiber);

}  // namespace tidarc_emu
