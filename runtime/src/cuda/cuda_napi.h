#pragma once
#include <napi.h>

namespace tidarc_cuda {
/** Sets exports.cuda (status, open, alloc, free, upload, download, copy, fill, loadModule,
    getFunction, setMaxDynamicShared, launch, synchronize; beginCapture, endCapture,
    graphLaunch, graphDestroy; hostAlloc, hostFree, uploadAsync, downloadAsync,
    streamSynchronize; eventCreate, eventRecord, eventElapsed, eventDestroy) and
    exports.cudaStatus. */
void RegisterCuda(Napi::Env env, Napi::Object exports);
}  // namespace tidarc_cuda
