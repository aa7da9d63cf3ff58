// One typed array that an asynchronous kernel call reads or writes.
//
// While the call runs on the libuv thread pool, JavaScript may detach the array's buffer
// (structuredClone with transfer, ArrayBuffer.prototype.transfer) or shrink a resizable one:
// the memory under the kernel is then freed or decommitted, and a reference to the typed array
// does not prevent it (Node-API 8 cannot pin a buffer). So the call works on a native copy,
// taken on the main thread before the call is queued, and an output is copied back on the main
// thread when the call settles, only after checking that the array still has its length.
// A SharedArrayBuffer can be neither detached nor shrunk: it is used in place, no copy.
// Cost: one memcpy per array and call (an output: two); of the caches, only the slots the call
// reads (Gather): a fresh copy of 128 MB took 0.4 s on the development VM, mostly page faults,
// against 1 ms for the kernel at L = 512. Figures: runAsync in src/runtime/kernel-library.ts.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <napi.h>

namespace tidarc {

struct TypedArrayInfo {
  void* data = nullptr;
  size_t bytes = 0;
  bool shared = false;  // backed by a SharedArrayBuffer
};

inline size_t ElementBytes(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

// The array's memory as of now (never cached: a buffer may have changed since the last look).
inline TypedArrayInfo InspectTypedArray(Napi::Env env, napi_value array) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer;
  size_t offset = 0;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, array, &type, &length, &data, &buffer, &offset),
                       TypedArrayInfo{});
  bool is_array_buffer = false;  // false for a SharedArrayBuffer
  NAPI_THROW_IF_FAILED(env, napi_is_arraybuffer(env, buffer, &is_array_buffer), TypedArrayInfo{});
  TypedArrayInfo info;
  info.data = data;
  info.bytes = length * ElementBytes(type);
  info.shared = !is_array_buffer;
  return info;
}

// Part of an array to copy, compacted: `bytes` in all, and which source bytes go where.
struct Gather {
  struct Range {
    size_t from;  // byte offset in the array
    size_t to;    // byte offset in the copy
    size_t size;
  };
  size_t bytes = 0;
  std::vector<Range> ranges;
};

class StagedArray {
 public:
  // Copies the array's contents now (on the main thread) unless it is shared: all of it, or
  // with `gather`, only its ranges into a copy of gather->bytes (input arrays only; bytes of
  // the copy outside the ranges are left uninitialised). `field` names it in errors (e.g. "o").
  StagedArray(Napi::Env env, Napi::TypedArray array, const char* field, const Gather* gather = nullptr)
      : ref_(Napi::Persistent(static_cast<Napi::Object>(array))), field_(field) {
    TypedArrayInfo info = InspectTypedArray(env, array);
    shared_ = info.shared;
    bytes_ = info.bytes;
    const size_t copy_bytes = gather != nullptr ? gather->bytes : bytes_;
    if (shared_ && bytes_ > 0) {
      data_ = info.data;
    } else if (copy_bytes == 0) {
      data_ = nullptr;  // as for a synchronous call: an empty array has no data
    } else {
      copy_.reset(new (std::nothrow) uint8_t[copy_bytes]);
      if (!copy_) {
        throw Napi::Error::New(env, "cannot allocate " + std::to_string(copy_bytes) + " bytes to copy args." + field_ +
                                        " for the asynchronous call");
      }
      const auto* from = static_cast<const uint8_t*>(info.data);
      if (gather == nullptr) {
        std::memcpy(copy_.get(), from, bytes_);
      } else {
        for (const Gather::Range& r : gather->ranges) {
          if (r.from + r.size <= bytes_ && r.to + r.size <= copy_bytes) std::memcpy(copy_.get() + r.to, from + r.from, r.size);
        }
      }
      data_ = copy_.get();
    }
  }

  // What the kernel reads or writes.
  void* data() const { return data_; }

  // On the main thread, when the call has finished: copies the result into the array. Returns
  // false, with the reason, when the array was detached or resized meanwhile (nothing written).
  bool WriteBack(Napi::Env env, std::string* why) {
    if (!copy_) return true;  // shared (written in place) or empty
    TypedArrayInfo now = InspectTypedArray(env, ref_.Value());
    if (now.bytes != bytes_ || now.data == nullptr) {
      *why = "args." + field_ + " was detached or resized while the asynchronous call ran (" + std::to_string(bytes_) +
             " bytes at the call, " + std::to_string(now.bytes) + " now); its result was not written";
      return false;
    }
    std::memcpy(now.data, copy_.get(), bytes_);
    return true;
  }

  const std::string& field() const { return field_; }

 private:
  Napi::Reference<Napi::Object> ref_;  // keeps the typed array alive for the write-back
  std::string field_;
  size_t bytes_ = 0;
  bool shared_ = false;
  void* data_ = nullptr;
  std::unique_ptr<uint8_t[]> copy_;
};

}  // namespace tidarc
