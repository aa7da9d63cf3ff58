#pragma once
#include <napi.h>

namespace tidarc_cuda {
/** Sets exports.cuda (status, open, close, primaryContext, alloc, free, upload, download, copy, fill, loadModule,
    getFunction, unloadModule, setMaxDynamicShared, launch, synchronize; beginCapture, endCapture,
    graphLaunch, graphDestroy; hostAlloc, hostFree, uploadAsync, downloadAsync,
    streamSynchronize; eventCreate, eventRecord, eventElapsed, eventDestroy) and
    exports.cudaStatus. */
void RegisterCuda(Napi::Env env, Napi::Object exports);
}  // namespace tidarc_cuda
