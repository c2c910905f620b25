// CUDA's kernel syntax in plain C++, so that g++ compiles the kernels of this folder and runs them on
// a CPU.  Used by the tests (host_build.py, beside it) to check the kernels' arithmetic on machines
// without a GPU; included before the kernels, never part of a GPU build nor of the package.
//
// The threads of a block cooperate (common.cuh): they stage tiles in __shared__ arrays and meet at
// __syncthreads().  Here each thread of a block is a fiber, a user-level thread with its own stack
// that runs on the one OS thread of the caller:
//
//  * launch() runs the blocks one after another; for a block, it resumes every thread in turn, and
//    each runs until it reaches __syncthreads() (and hands control back) or returns.  When every
//    thread waits at the barrier, all are resumed again, and so on until every thread has returned.
//    So no thread passes a barrier before every thread of its block has reached it: what CUDA
//    promises, and all the kernels rely on.
//  * __shared__ arrays are function-local statics: one copy, used by the one block that runs at a
//    time, exactly one array per block as on a GPU.
//  * A block where some threads return while others wait at a barrier is an error (CUDA leaves it
//    undefined); launch() reports it, and the Python side raises.
//  * Deterministic: the same order of threads every time, and no OS threads.  reverse_order runs
//    the blocks, and the threads between two barriers, from last to first: since no thread reads
//    what another writes without a barrier in between, the results must not change a bit.
//  * ignore_barriers makes __syncthreads() do nothing (each thread then runs to its end before the
//    next starts): a test switch, which shows that the kernels need their barriers.
//
// A switch between fibers saves and restores only the callee-saved registers (a few instructions of
// assembly on x86-64; ucontext's swapcontext elsewhere, which also makes a system call and is slower).
// Up to the math library (glibc's expf and CUDA's expf may differ in the last bit), the host build
// computes what the GPU computes.
#pragma once

#include <math.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(...)

struct nm_uint3 {
    unsigned x = 0, y = 0, z = 0;
};

inline nm_uint3 threadIdx, blockIdx, blockDim, gridDim;

#if defined(__x86_64__) && !defined(NUMPY_MNIST_HOST_UCONTEXT)
// nm_fiber_switch(&save, load): push the callee-saved registers on the current stack, store the stack
// pointer in *save, switch to the stack `load` and pop the same from it.  (The SSE and x87 control
// words are not switched: no kernel changes the rounding mode, so every fiber has the caller's.)
// A new fiber's stack is prepared (prepare_fiber) so that the pops lead to nm_fiber_start, which
// calls r13(r12), i.e. fiber_main(nullptr).
extern "C" void nm_fiber_switch(void** save, void* load);
extern "C" void nm_fiber_start();
asm(R"(
    .text
    .p2align 4
    .globl nm_fiber_switch
    .hidden nm_fiber_switch
    .type nm_fiber_switch, @function
nm_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size nm_fiber_switch, .-nm_fiber_switch

    .p2align 4
    .globl nm_fiber_start
    .hidden nm_fiber_start
    .type nm_fiber_start, @function
nm_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size nm_fiber_start, .-nm_fiber_start
)");
#define NM_FIBER_ASM 1
#else
#include <ucontext.h>
#define NM_FIBER_ASM 0
#endif

namespace numpy_mnist_host {

inline bool reverse_order = false;
inline bool ignore_barriers = false;

#if NM_FIBER_ASM
struct Context {
    void* sp = nullptr;
};

inline void switch_context(Context& from, Context& to) { nm_fiber_switch(&from.sp, to.sp); }

// The stack of a fiber that has not run yet: the frame nm_fiber_switch pops, from the lowest address
// up: r15, r14, r13 = fn, r12 = arg, rbx, rbp, the return address nm_fiber_start; above it the stack
// pointer is 16-byte aligned, as the call in nm_fiber_start needs.
inline void prepare_fiber(Context& c, char* stack, std::size_t size, void (*fn)(void*))
{
    const std::uintptr_t top = (reinterpret_cast<std::uintptr_t>(stack) + size) & ~std::uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top - 56);
    sp[0] = nullptr;
    sp[1] = nullptr;
    sp[2] = reinterpret_cast<void*>(fn);
    sp[3] = nullptr;
    sp[4] = nullptr;
    sp[5] = nullptr;
    sp[6] = reinterpret_cast<void*>(&nm_fiber_start);
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};

inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }

inline void (*ucontext_entry)(void*) = nullptr;
inline void ucontext_start() { ucontext_entry(nullptr); }

inline void prepare_fiber(Context& c, char* stack, std::size_t size, void (*fn)(void*))
{
    ucontext_entry = fn;
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, &ucontext_start, 0);
}
#endif

enum : unsigned char { RUNNABLE, WAITING, DONE };

// 64 KiB of stack per thread (the kernels keep a few arrays of at most 32 values), with a page below
// it that faults instead of letting an overflow write into the next fiber's stack.
constexpr std::size_t STACK_BYTES = 64 * 1024;
constexpr std::size_t GUARD_BYTES = 4096;

struct Scheduler {
    std::vector<Context> fibers;
    std::vector<unsigned char> state;
    std::vector<char*> stacks;
    Context main;
    unsigned current = 0;
    void (*body)(void*) = nullptr;  // runs the kernel for the thread in threadIdx
    void* body_arg = nullptr;

    char* stack(unsigned t)
    {
        while (stacks.size() <= t) {
            void* p = mmap(nullptr, STACK_BYTES + GUARD_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED)
                return nullptr;
            mprotect(p, GUARD_BYTES, PROT_NONE);
            stacks.push_back(static_cast<char*>(p) + GUARD_BYTES);
        }
        return stacks[t];
    }
};

inline Scheduler scheduler;

inline void fiber_main(void*)
{
    Scheduler& s = scheduler;
    s.body(s.body_arg);
    s.state[s.current] = DONE;
    switch_context(s.fibers[s.current], s.main);  // never resumed
    __builtin_trap();
}

// __syncthreads(): this thread waits; control goes back to launch(), which resumes it once every
// thread of the block waits here.
inline void barrier()
{
    if (ignore_barriers)
        return;
    Scheduler& s = scheduler;
    const unsigned me = s.current;
    s.state[me] = WAITING;
    switch_context(s.fibers[me], s.main);
}

// The errors launch() reports (0: none).
constexpr int BARRIER_DIVERGED = 1;  // some threads of a block returned while others waited at a barrier
constexpr int NO_STACK = 2;          // mmap refused a fiber stack

// Runs one block of `block` threads; 0, or one of the errors above.
inline int run_block(unsigned block)
{
    Scheduler& s = scheduler;
    for (unsigned t = 0; t < block; ++t) {
        char* stack = s.stack(t);
        if (stack == nullptr)
            return NO_STACK;
        prepare_fiber(s.fibers[t], stack, STACK_BYTES, &fiber_main);
        s.state[t] = RUNNABLE;
    }
    for (;;) {
        for (unsigned i = 0; i < block; ++i) {
            const unsigned t = reverse_order ? block - 1 - i : i;
            if (s.state[t] == DONE)
                continue;
            s.state[t] = RUNNABLE;
            s.current = t;
            threadIdx.x = t;
            switch_context(s.main, s.fibers[t]);
        }
        unsigned done = 0;
        for (unsigned t = 0; t < block; ++t)
            done += s.state[t] == DONE;
        if (done == block)
            return 0;
        if (done != 0)
            return BARRIER_DIVERGED;
    }
}

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

// Runs a one-dimensional launch: every block in turn (or backwards), each block's threads as fibers.
// args follows cuLaunchKernel's convention: args[i] points at the value of the i-th argument.
// Returns 0, or the error that stopped it (BARRIER_DIVERGED, NO_STACK).
template <typename... A>
int launch(void (*kernel)(A...), unsigned grid, unsigned block, void** args)
{
    struct Call {
        void (*kernel)(A...);
        void** args;
        static void run(void* self)
        {
            Call* c = static_cast<Call*>(self);
            call(c->kernel, c->args, std::index_sequence_for<A...>{});
        }
    } c{kernel, args};
    Scheduler& s = scheduler;
    if (s.fibers.size() < block) {
        s.fibers.resize(block);
        s.state.resize(block);
    }
    s.body = &Call::run;
    s.body_arg = &c;
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = reverse_order ? grid - 1 - b : b;
        const int error = run_block(block);
        if (error != 0)
            return error;
    }
    return 0;
}

// A kernel's parameter types as a short code, which the Python side checks its arguments against:
// "i" int, "q" long long, "f" float, "d" double, and "*" after one of these for a pointer.
template <typename A> struct code;
template <> struct code<int> { static constexpr const char* value = "i"; };
template <> struct code<long long> { static constexpr const char* value = "q"; };
template <> struct code<float> { static constexpr const char* value = "f"; };
template <> struct code<double> { static constexpr const char* value = "d"; };
template <typename A> struct code<A*> {
    static std::string value_of() { return std::string(code<std::remove_cv_t<A>>::value) + "*"; }
};

template <typename A> std::string code_of()
{
    if constexpr (std::is_pointer_v<A>)
        return code<A>::value_of();
    else
        return code<A>::value;
}

template <typename... A>
const char* signature(void (*)(A...))
{
    static const std::string joined = [] {
        std::string s;
        ((s += code_of<std::remove_cv_t<A>>() + ","), ...);
        return s;
    }();
    return joined.c_str();
}

}  // namespace numpy_mnist_host

inline void __syncthreads() { numpy_mnist_host::barrier(); }
