// CUDA's kernel syntax in plain C++, so that g++ compiles the kernels of this folder and runs them on
// a CPU, one thread after another.  Used by the tests (numpy_mnist/fused/host.py) to check the
// kernels' arithmetic on machines without a GPU; never part of a GPU build.
//
// Faithful because the kernels keep the rules of common.cuh: their threads never share memory nor
// wait for each other, so running them one by one, in any order, computes what the GPU computes
// (up to the math library: glibc's expf and CUDA's expf may differ in the last bit).
// launch() can run the threads backwards, which exposes any kernel whose threads read what
// other threads of the same launch write.
#pragma once

#include <math.h>

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict

struct nm_uint3 {
    unsigned x = 0, y = 0, z = 0;
};

inline nm_uint3 threadIdx, blockIdx, blockDim, gridDim;

namespace numpy_mnist_host {

inline bool reverse_order = false;

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

// Runs every thread of a one-dimensional launch, block by block, thread by thread (or backwards).
// args follows cuLaunchKernel's convention: args[i] points at the value of the i-th argument.
template <typename... A>
void launch(void (*kernel)(A...), unsigned grid, unsigned block, void** args)
{
    gridDim.x = grid;
    blockDim.x = block;
    const unsigned long long total = (unsigned long long)grid * block;
    for (unsigned long long t = 0; t < total; ++t) {
        const unsigned long long g = reverse_order ? total - 1 - t : t;
        blockIdx.x = (unsigned)(g / block);
        threadIdx.x = (unsigned)(g % block);
        call(kernel, args, std::index_sequence_for<A...>{});
    }
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
