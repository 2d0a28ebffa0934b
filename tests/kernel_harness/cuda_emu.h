// Host emulation of the CUDA built-ins used by the kernels of snn_parallel/ops/*/*.cu, for SNN_DTYPE float, __half
// or __nv_bfloat16 (storage types with the device's round-to-nearest-even conversions).
//
// Force-included (g++ -include cuda_emu.h) before the kernel sources so that they compile as plain C++.
// A launch runs every CUDA thread as a fiber with its own stack (a register switch on x86-64, ucontext elsewhere):
//
// - the threads of a block run on one host thread, switching at every cooperation point: __syncthreads,
//   __syncwarp and the warp shuffles are real barriers (a block whose threads do not all reach a barrier is
//   reported as an error, not hung); __shared__ variables are per block (static thread_local: one block runs
//   on a host thread at a time);
// - blocks are handed to `workers` host threads in a random order, so blocks really run at the same time
//   and a block that waits for another (a decoupled look-back) really waits;
// - which runnable thread of a block runs next is drawn from a generator seeded by (seed, block), and the
//   flag stores of common.cuh's flag_store are delayed at random, so each seed is one reproducible
//   interleaving (up to the host threads' own timing).
//
// Atomics, fences and the flag loads/stores of common.cuh (flag_load, flag_store, load_cg) are host atomics
// with acquire/release order and are cooperation points too. SNN_COUNT(event) counts events for the tests
// (e.g. that a look-back waited). Float rounding is the host compiler's, which does not contract FMAs at -O2
// on x86-64 without -mfma; fmaf is the exact fused operation, as on the GPU.
#pragma once

#include <math.h>  // expf, fabsf, sqrtf, ... in the global namespace, as in device code
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define SNN_HOST_EMULATION 1

#ifndef SNN_DTYPE
#define SNN_DTYPE float
#endif

// ---- half precision storage: the conversions of cuda_fp16.h / cuda_bf16.h (round to nearest even) ---------
#define SNN_HAS_HALF_TYPES 1
struct __half {
    _Float16 value;
};
struct __nv_bfloat16 {
    unsigned short bits;
};
inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half(float f) { return {static_cast<_Float16>(f)}; }
inline float __bfloat162float(__nv_bfloat16 b) {
    const unsigned int bits = static_cast<unsigned int>(b.bits) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
    unsigned int bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return {static_cast<unsigned short>((bits >> 16) | 0x40u)};  // NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return {static_cast<unsigned short>(bits >> 16)};
}

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Set by the scheduler for the fiber it runs (threadIdx) and for the block (blockIdx) and launch.
inline thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim(1, 1, 1), gridDim(1, 1, 1);
constexpr int warpSize = 32;

struct alignas(8) float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) {
    float2 r;
    r.x = x;
    r.y = y;
    return r;
}

// A launch as the harness library receives it from Python (tests/kernel_harness/__init__.py).
struct emu_config {
    unsigned int grid[3], block[3];
    unsigned int workers;     // host threads running blocks
    unsigned long long seed;  // schedule
    double timeout_s;         // a block that runs longer (a barrier or a wait that never ends) is an error
};

// Errors a launch returns (0: none).
enum emu_error { EMU_OK = 0, EMU_BARRIER_AFTER_EXIT = 1, EMU_WARP_MISMATCH = 2, EMU_TIMEOUT = 3, EMU_DEADLOCK = 4 };

// Event counters, read by the tests (SNN_COUNT).
inline std::atomic<long long> emu_counters[16];
#define SNN_COUNT(event) (emu_counters[(event)].fetch_add(1, std::memory_order_relaxed))

namespace emu {

// ---- fiber contexts: a minimal switch of the callee-saved registers on x86-64, ucontext elsewhere -------
#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch, @function
emu_switch:
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
    .size emu_switch, .-emu_switch
)");
struct Context {
    void* sp = nullptr;
};
inline void switch_context(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
// A context that starts entry() on the stack [stack, stack + size): six zero registers, then entry as the return
// address, placed so that entry starts with the stack aligned as after a call.
inline void make_context(Context& c, char* stack, std::size_t size, void (*entry)()) {
    auto top = reinterpret_cast<std::uintptr_t>(stack + size) & ~std::uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top) - 8;
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    sp[6] = reinterpret_cast<void*>(entry);
    sp[7] = nullptr;
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, char* stack, std::size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

enum class State { runnable, block_barrier, warp_barrier, done };

struct Fiber {
    Context context;
    char* stack;
    State state;
    dim3 index;
};

constexpr std::size_t kStack = 64 * 1024;  // per thread
constexpr std::size_t kGuard = 4096;       // a PROT_NONE page below each stack

struct Block {
    std::vector<Fiber> fibers;
    std::vector<std::size_t> ready;  // runnable fibers other than the one running
    Context scheduler;
    std::mt19937_64 rng;
    std::size_t current = 0;
    unsigned live = 0, at_barrier = 0;
    std::vector<unsigned> warp_waiting;               // per warp: lanes waiting at __syncwarp
    std::vector<unsigned char> exchange;              // per warp: 32 slots of 16 bytes for the shuffles
    std::chrono::steady_clock::time_point deadline;
    int error = EMU_OK;
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
};

inline thread_local Block* block = nullptr;
inline std::atomic<int> launch_error{EMU_OK};

inline Fiber& me() { return block->fibers[block->current]; }
inline unsigned linear_tid(const dim3& t) { return t.x + blockDim.x * (t.y + blockDim.y * t.z); }
inline unsigned lane_of(const dim3& t) { return linear_tid(t) % 32; }
inline unsigned warp_of(const dim3& t) { return linear_tid(t) / 32; }

// Back to the scheduler; returns when the scheduler runs this fiber again.
inline void yield() { switch_context(me().context, block->scheduler); }

// Stop this fiber for good with an error (the scheduler abandons the block).
[[noreturn]] inline void fail(int error) {
    block->error = error;
    switch_context(me().context, block->scheduler);
    __builtin_unreachable();
}

inline void check_time() {
    if (std::chrono::steady_clock::now() > block->deadline) fail(EMU_TIMEOUT);
}

inline void fiber_main() {
    block->body(block->body_arg);
    me().state = State::done;
    --block->live;
    if (block->at_barrier > 0 && block->at_barrier == block->live) block->error = EMU_BARRIER_AFTER_EXIT;
    switch_context(me().context, block->scheduler);  // never resumed
    __builtin_unreachable();
}

// Make the fibers waiting in `state` runnable (the running one is queued when it yields).
inline void release(State state, std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
        if (block->fibers[i].state != state) continue;
        block->fibers[i].state = State::runnable;
        if (i != block->current) block->ready.push_back(i);
    }
}

// Run every thread of the current block to completion in a random interleaving.
inline int run_block(unsigned long long seed) {
    Block& b = *block;
    b.rng.seed(seed);
    b.ready.clear();
    for (std::size_t i = 0; i < b.fibers.size(); ++i) b.ready.push_back(i);
    while (b.live > 0 && b.error == EMU_OK) {
        if (b.ready.empty()) return EMU_DEADLOCK;
        const std::size_t pick = b.rng() % b.ready.size();
        b.current = b.ready[pick];
        b.ready[pick] = b.ready.back();
        b.ready.pop_back();
        threadIdx = b.fibers[b.current].index;
        switch_context(b.scheduler, b.fibers[b.current].context);
        if (b.fibers[b.current].state == State::runnable) b.ready.push_back(b.current);
        if (launch_error.load(std::memory_order_relaxed) != EMU_OK) return launch_error.load();
    }
    return b.error;
}

// Random delay at a publication point, so that waiting blocks see flags in many orders.
inline void jitter() {
    const auto draw = block->rng() % 8;
    if (draw == 0) std::this_thread::sleep_for(std::chrono::microseconds(1 + block->rng() % 50));
    else if (draw < 3) std::this_thread::yield();
}

}  // namespace emu

// ---- block and warp cooperation --------------------------------------------------------------
inline void __syncthreads() {
    emu::Block& b = *emu::block;
    emu::me().state = emu::State::block_barrier;
    if (++b.at_barrier == b.live) {
        if (b.live != b.fibers.size()) emu::fail(EMU_BARRIER_AFTER_EXIT);
        emu::release(emu::State::block_barrier, 0, b.fibers.size());
        b.at_barrier = 0;
    }
    emu::yield();
}

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    emu::Block& b = *emu::block;
    const unsigned warp = emu::warp_of(threadIdx), lane = emu::lane_of(threadIdx);
    const unsigned threads = static_cast<unsigned>(b.fibers.size());
    const unsigned lanes = std::min(32u, threads - warp * 32);
    const unsigned full = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    if ((mask & full) != full || !(mask >> lane & 1u)) emu::fail(EMU_WARP_MISMATCH);  // only whole warps here
    emu::me().state = emu::State::warp_barrier;
    if (++b.warp_waiting[warp] == lanes) {
        for (unsigned i = warp * 32; i < warp * 32 + lanes; ++i)
            if (b.fibers[i].state == emu::State::done) emu::fail(EMU_BARRIER_AFTER_EXIT);
        emu::release(emu::State::warp_barrier, warp * 32, warp * 32 + lanes);
        b.warp_waiting[warp] = 0;
    }
    emu::yield();
}

namespace emu {
template <class T>
inline T shuffle(unsigned mask, T value, int source_lane) {
    static_assert(sizeof(T) <= 16 && std::is_trivially_copyable<T>::value, "shuffled values are up to 16 bytes");
    unsigned char* slots = &block->exchange[warp_of(threadIdx) * 32 * 16];
    std::memcpy(slots + lane_of(threadIdx) * 16, &value, sizeof(T));
    __syncwarp(mask);
    T out;
    std::memcpy(&out, slots + source_lane * 16, sizeof(T));
    __syncwarp(mask);  // nobody overwrites a slot before every lane has read
    return out;
}
inline int segment_base(int width) { return static_cast<int>(lane_of(threadIdx)) / width * width; }
}  // namespace emu

template <class T>
inline T __shfl_sync(unsigned mask, T value, int source, int width = 32) {
    return emu::shuffle(mask, value, emu::segment_base(width) + source % width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    const int lane = static_cast<int>(emu::lane_of(threadIdx)), base = emu::segment_base(width);
    return emu::shuffle(mask, value, lane - static_cast<int>(delta) >= base ? lane - static_cast<int>(delta) : lane);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    const int lane = static_cast<int>(emu::lane_of(threadIdx)), base = emu::segment_base(width);
    return emu::shuffle(mask, value, lane + static_cast<int>(delta) < base + width ? lane + static_cast<int>(delta) : lane);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    const int lane = static_cast<int>(emu::lane_of(threadIdx)), base = emu::segment_base(width);
    const int source = lane ^ lane_mask;
    return emu::shuffle(mask, value, source >= base && source < base + width ? source : lane);
}

// ---- memory order: atomics, fences, flags -----------------------------------------------------
inline void __threadfence() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    emu::yield();
}
template <class T>
inline T atomicAdd(T* address, T value) {
    const T old = __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
    emu::yield();
    return old;
}
inline float atomicAdd(float* address, float value) {
    float old;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    float sum = old + value;
    while (!__atomic_compare_exchange(address, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) sum = old + value;
    emu::yield();
    return old;
}
template <class T>
inline T atomicExch(T* address, T value) {
    const T old = __atomic_exchange_n(address, value, __ATOMIC_SEQ_CST);
    emu::yield();
    return old;
}

// common.cuh's flag and cache-global accessors, host versions (the device versions are volatile accesses,
// __threadfence and __ldcg).
inline int flag_load(const int* address) {
    emu::check_time();
    emu::yield();
    std::this_thread::yield();  // let the block being waited for run
    return __atomic_load_n(address, __ATOMIC_ACQUIRE);
}
inline void flag_store(int* address, int value) {
    emu::jitter();
    __atomic_store_n(address, value, __ATOMIC_RELEASE);
    emu::yield();
}
template <class T>
inline T load_cg(const T* address) {
    return *address;
}

// ---- a launch -------------------------------------------------------------------------------
namespace emu {

template <class... P, std::size_t... I>
inline void call(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<P>*>(args[I])...);
}

struct Stacks {
    char* base = nullptr;
    std::size_t size = 0;
    explicit Stacks(std::size_t count) : size(count * (kStack + kGuard)) {
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        base = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
        for (std::size_t i = 0; base && i < count; ++i) mprotect(base + i * (kStack + kGuard), kGuard, PROT_NONE);
    }
    ~Stacks() {
        if (base) munmap(base, size);
    }
    char* stack(std::size_t i) const { return base + i * (kStack + kGuard) + kGuard; }
};

template <class... P>
struct Launch {
    void (*kernel)(P...);
    void** args;
    static void body(void* self) {
        auto* launch = static_cast<Launch*>(self);
        call(launch->kernel, launch->args, std::index_sequence_for<P...>{});
    }
};

}  // namespace emu

// Run body(arg) as every thread of a grid of blocks (see the top of this file); returns an emu_error.
inline int emu_launch(const emu_config& cfg, void (*body)(void*), void* arg) {
    const dim3 grid(cfg.grid[0], cfg.grid[1], cfg.grid[2]), threads(cfg.block[0], cfg.block[1], cfg.block[2]);
    const unsigned long long blocks = 1ull * grid.x * grid.y * grid.z;
    const std::size_t per_block = 1ull * threads.x * threads.y * threads.z;
    std::vector<unsigned long long> order(blocks);
    for (unsigned long long i = 0; i < blocks; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(cfg.seed));
    std::atomic<unsigned long long> next{0};
    emu::launch_error = EMU_OK;

    auto worker = [&] {
        emu::Stacks stacks(per_block);
        emu::Block b;
        emu::block = &b;
        gridDim = grid;
        blockDim = threads;
        b.fibers.resize(per_block);
        b.warp_waiting.assign((per_block + 31) / 32, 0);
        b.exchange.assign((per_block + 31) / 32 * 32 * 16, 0);
        b.body = body;
        b.body_arg = arg;
        for (unsigned long long k; (k = next.fetch_add(1)) < blocks && emu::launch_error.load() == EMU_OK;) {
            const unsigned long long id = order[k];
            blockIdx = dim3(id % grid.x, id / grid.x % grid.y, id / grid.x / grid.y);
            b.live = static_cast<unsigned>(per_block);
            b.at_barrier = 0;
            b.error = EMU_OK;
            std::fill(b.warp_waiting.begin(), b.warp_waiting.end(), 0u);
            b.deadline = std::chrono::steady_clock::now() +
                         std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(cfg.timeout_s));
            for (std::size_t i = 0; i < per_block; ++i) {
                emu::Fiber& f = b.fibers[i];
                f.state = emu::State::runnable;
                f.index = dim3(i % threads.x, i / threads.x % threads.y, i / threads.x / threads.y);
                f.stack = stacks.stack(i);
                emu::make_context(f.context, f.stack, emu::kStack, emu::fiber_main);
            }
            const int error = emu::run_block(cfg.seed * 0x9E3779B97F4A7C15ull + id + 1);
            if (error != EMU_OK) {
                int expected = EMU_OK;
                emu::launch_error.compare_exchange_strong(expected, error);
            }
        }
        emu::block = nullptr;
    };
    const unsigned workers = static_cast<unsigned>(std::max(1ull, std::min<unsigned long long>(cfg.workers, blocks)));
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < workers; ++w) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    return emu::launch_error.load();
}

// kernel<<<grid, block>>>(args...); args as cuLaunchKernel takes them: args[i] points at the value of parameter i.
template <class... P>
inline int emu_run(const emu_config& cfg, void (*kernel)(P...), void** args) {
    emu::Launch<P...> launch{kernel, args};
    return emu_launch(cfg, &emu::Launch<P...>::body, &launch);
}

extern "C" __attribute__((visibility("default"))) void emu_read_counters(long long* out) {
    for (int i = 0; i < 16; ++i) out[i] = emu_counters[i].load();
}
extern "C" __attribute__((visibility("default"))) void emu_reset_counters() {
    for (auto& c : emu_counters) c.store(0);
}
