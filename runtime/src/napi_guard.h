// A C++ exception other than Napi::Error (std::bad_alloc from a scratch buffer, say) would
// terminate the process; GuardedCall turns it into a JS Error that names the module.
#pragma once
#include <exception>
#include <string>

#include <napi.h>

namespace tidarc {

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value GuardedCall(const Napi::CallbackInfo& info, const char* module) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(module) + ": " + e.what());
  } catch (...) {
    throw Napi::Error::New(info.Env(), std::string(module) + ": unknown C++ exception");
  }
}

}  // namespace tidarc
