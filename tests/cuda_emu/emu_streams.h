// Streams and events of the CUDA emulator: work is queued, not run, until the host must see its result, and
// then it runs in the most hostile order that CUDA's ordering rules still allow.
//
// Why: on a device, work on two streams may run in any order that respects stream order, the events one
// stream waits on, and the host's synchronisations. A missing cudaStreamWaitEvent, a pinned buffer refilled
// while its copy is still queued, or a buffer read on one stream while another still writes it, gives a wrong
// answer only sometimes there. Here it gives one every time:
// - Every asynchronous call (kernel launches, cudaMemcpyAsync, cudaMemsetAsync, cuBLAS, cuDNN and NCCL calls,
//   event records and waits) is queued on its stream and returns at once.
// - Queued work runs only when the host needs it: cudaStreamSynchronize, cudaEventSynchronize,
//   cudaDeviceSynchronize, the blocking copies, cudaFree and cudaFreeHost (which synchronise on a device), or a
//   query (which lets one piece of work run and says "not ready").
// - Then, of the stream heads whose waits are met, the one queued *last* runs first. Work that should have
//   waited for earlier work on another stream, and does not, therefore overtakes it, whichever direction the
//   hazard has (read before write, or write before read), as long as nothing queued earlier on its own
//   stream holds it back. Correctly ordered work is unaffected.
// - MOCO_EMU_STREAM_ORDER=tail runs instead the stream whose latest work was queued last, as far as its waits
//   allow. That catches the case the default misses (the late work sits behind earlier work on its own
//   stream) and misses one the default catches (the earlier work has later work behind it on its stream), so
//   ctest runs the stream-heavy tests under both (emu.stream_order_tail).
// - The legacy default stream (nullptr) waits for all earlier work on blocking streams, and they wait for it,
//   as CUDA documents; streams made with cudaStreamNonBlocking do not.
// - Copies from pageable host memory are staged at the call (the caller may reuse the memory at once, as with
//   CUDA); copies into pageable host memory finish before the call returns. Page-locked memory is read and
//   written when the copy runs, so a host that refills it too early is caught.
//
// MOCO_EMU_EAGER=1 runs every call to completion before it returns instead: the old behaviour, to tell an
// ordering bug from any other.
#pragma once
#include <cstddef>
#include <functional>

#include "emu_types.h"

namespace cuda_emu {

enum class StreamOrder { LatestHead, LatestTail };
StreamOrder stream_order();  // MOCO_EMU_STREAM_ORDER: head (the default) or tail

// Queues work on `stream` (nullptr: the legacy default stream). It runs on whichever host thread drains the
// queues, with the emulator's lock held.
void enqueue(cudaStream_t stream, std::function<void()> work);

// Queues work and returns once it has run (a blocking call).
void run_blocking(cudaStream_t stream, std::function<void()> work);

void sync_stream(cudaStream_t stream);
void sync_event(cudaEvent_t event);
void sync_device();

// cudaStreamQuery / cudaEventQuery: true when done; otherwise one piece of queued work runs (the device
// makes progress while the host polls) and the answer is false.
bool poll_stream(cudaStream_t stream);
bool poll_event(cudaEvent_t event);

cudaStream_t create_stream(unsigned flags, int device);
int stream_device(cudaStream_t stream);  // the device current when it was made; -1 for the legacy stream
void destroy_stream(cudaStream_t stream);
cudaEvent_t create_event(unsigned flags);
void destroy_event(cudaEvent_t event);
void record_event(cudaEvent_t event, cudaStream_t stream);
void wait_event(cudaStream_t stream, cudaEvent_t event);
// Milliseconds between two events' completed records; false if either is still queued or was never recorded.
bool elapsed_ms(cudaEvent_t start, cudaEvent_t end, float* ms);
unsigned event_flags(cudaEvent_t event);

// Bytes of device memory from p to the end of the cudaMalloc block holding it; 0 when p is in none.
size_t device_bytes_from(const void* p);

}  // namespace cuda_emu
