// The runtime half of the host harness: the kernel registry that BERTRT_ENTRY fills, and
// the launcher that runs a kernel's blocks one after another, each with one std::thread
// per CUDA thread. Exposed to Rust through a small C ABI.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "cuda_host.h"

namespace bertrt_host {

namespace {

struct Entry {
    Thunk thunk;
    std::size_t args_size;
    unsigned long launches = 0;
};

std::map<std::string, Entry>& registry() {
    static std::map<std::string, Entry> r;
    return r;
}

// Launches are serialised: static __shared__ storage is one object per kernel.
std::mutex& launch_mutex() {
    static std::mutex m;
    return m;
}

constexpr unsigned char kPoison = 0xFF;

}  // namespace

void fail(const char* what) {
    std::fprintf(stderr, "kernel harness: %s (block %u,%u,%u thread %u,%u,%u)\n", what, tls.block_idx.x,
                 tls.block_idx.y, tls.block_idx.z, tls.thread_idx.x, tls.thread_idx.y, tls.thread_idx.z);
    std::abort();
}

Registrar::Registrar(const char* name, Thunk thunk, std::size_t args_size) {
    registry()[name] = Entry{thunk, args_size};
}

}  // namespace bertrt_host

using namespace bertrt_host;

extern "C" {

// Runs kernel `name` over `grid` blocks of `block` threads with `smem` bytes of dynamic
// shared memory. Returns 0, or -1 for an unknown kernel, -2 for an argument struct of the
// wrong size, -3 for a bad geometry.
int bertrt_host_launch(const char* name, const unsigned* grid, const unsigned* block, std::size_t smem,
                       const void* args, std::size_t args_size) {
    std::lock_guard<std::mutex> guard(launch_mutex());
    auto it = registry().find(name);
    if (it == registry().end()) return -1;
    Entry& entry = it->second;
    if (entry.args_size != args_size) return -2;
    const dim3 g(grid[0], grid[1], grid[2]);
    const dim3 b(block[0], block[1], block[2]);
    const unsigned threads = b.x * b.y * b.z;
    if (threads == 0 || threads > 1024 || g.x == 0 || g.y == 0 || g.z == 0) return -3;

    const unsigned warps = (threads + kWarpSize - 1) / kWarpSize;
    Barrier block_barrier(threads);
    Barrier edge_barrier(threads);  // block starts and ends, apart from __syncthreads
    std::vector<std::unique_ptr<Barrier>> warp_barriers;
    for (unsigned w = 0; w < warps; ++w) {
        unsigned size = std::min<unsigned>(kWarpSize, threads - w * kWarpSize);
        warp_barriers.emplace_back(std::make_unique<Barrier>(size));
    }
    std::vector<unsigned char> slots(static_cast<std::size_t>(warps) * 2 * kWarpSize * 8);
    const std::size_t smem_bytes = smem == 0 ? 16 : smem;
    auto* dynamic = static_cast<unsigned char*>(::operator new(smem_bytes, std::align_val_t(128)));
    std::memset(dynamic, kPoison, smem_bytes);

    auto body = [&](unsigned linear) {
        tls.block_dim = b;
        tls.grid_dim = g;
        tls.thread_idx = dim3(linear % b.x, (linear / b.x) % b.y, linear / (b.x * b.y));
        tls.lane = static_cast<int>(linear % kWarpSize);
        const unsigned w = linear / kWarpSize;
        tls.warp = Warp{warp_barriers[w].get(),
                        reinterpret_cast<unsigned char(*)[8]>(slots.data() + static_cast<std::size_t>(w) * 2 * kWarpSize * 8),
                        static_cast<int>(std::min<unsigned>(kWarpSize, threads - w * kWarpSize))};
        tls.bank = 0;
        tls.block_barrier = &block_barrier;
        tls.dynamic_smem = dynamic;
        for (unsigned z = 0; z < g.z; ++z)
            for (unsigned y = 0; y < g.y; ++y)
                for (unsigned x = 0; x < g.x; ++x) {
                    tls.block_idx = dim3(x, y, z);
                    edge_barrier.arrive_and_wait();
                    entry.thunk(args);
                    edge_barrier.arrive_and_wait();
                    // A new block finds whatever the last one left, except that dynamic
                    // shared memory is poisoned so uninitialised reads show up as NaN.
                    if (linear == 0) std::memset(dynamic, kPoison, smem_bytes);
                }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
    for (auto& t : pool) t.join();
    ::operator delete(dynamic, std::align_val_t(128));
    entry.launches += 1;
    return 0;
}

// How many times kernel `name` has been launched, or -1 if no such kernel exists.
long bertrt_host_launches(const char* name) {
    std::lock_guard<std::mutex> guard(launch_mutex());
    auto it = registry().find(name);
    return it == registry().end() ? -1 : static_cast<long>(it->second.launches);
}

// Number of registered entry points.
std::size_t bertrt_host_kernel_count() { return registry().size(); }

// Name of entry point `i` (sorted), or null.
const char* bertrt_host_kernel_name(std::size_t i) {
    if (i >= registry().size()) return nullptr;
    auto it = registry().begin();
    std::advance(it, static_cast<long>(i));
    return it->first.c_str();
}

}  // extern "C"
