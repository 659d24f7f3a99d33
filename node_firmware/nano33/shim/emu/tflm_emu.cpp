/* The shim's TFLM interpreter for the emulator. NOT TFLM (its sources are not available
 * offline): GetModel() checks that it was given a .tflite flatbuffer (identifier "TFL3"),
 * and AllocateTensors() loads tflm_model.blob -- the TinyFleet blob converted from the same
 * .tflite -- and runs it with tfm_runtime in the sketch's arena. tfm_runtime gives TFLM's
 * output bytes for the ops it supports (tests/runtimes), so the sketch's TFLM path (op
 * resolver, arena, quantisation, output interpretation, telemetry) runs as written; the
 * Arduino TFLM library itself is untested. */
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "emu_io.h"

extern "C" {
#include "tfm_runtime.h"
#include "tfn_ota.h" /* tfn_blob_scale */
}

namespace {
alignas(16) uint8_t blob[64 * 1024];
tfm_model model;
} // namespace

const tflite::Model *tflite::GetModel(const void *buf)
{
    const uint8_t *b = (const uint8_t *)buf;
    return b && !memcmp(b + 4, "TFL3", 4) ? (const tflite::Model *)buf : nullptr;
}

tflite::MicroOpResolver::MicroOpResolver(unsigned int capacity) : capacity_(capacity), count_(0), ops_(0) {}

TfLiteStatus tflite::MicroOpResolver::AddOp(ShimOp op)
{
    if (ops_ & (1u << op)) return kTfLiteError; /* TFLM refuses a second registration */
    if (count_ >= capacity_) return kTfLiteError;
    ops_ |= 1u << op;
    count_++;
    return kTfLiteOk;
}

bool tflite::MicroOpResolver::Has(ShimOp op) const { return (ops_ >> op) & 1u; }

tflite::MicroInterpreter::MicroInterpreter(const Model *model, const MicroOpResolver &op_resolver,
                                           uint8_t *tensor_arena, size_t tensor_arena_size,
                                           MicroResourceVariables *, MicroProfilerInterface *, bool)
    : model_(model), resolver_(op_resolver), arena_(tensor_arena), arena_size_(tensor_arena_size),
      allocated_(false), in_(), out_(), runtime_(nullptr) {}

TfLiteStatus tflite::MicroInterpreter::AllocateTensors()
{
    if (!model_ || ((uintptr_t)arena_ & 15)) return kTfLiteError; /* TFLM wants a 16-byte aligned arena */
    int h = emu_open("tflm_model.blob", 0);
    if (h < 0) return kTfLiteError;
    int n = emu_flen(h);
    if (n <= 0 || (size_t)n > sizeof blob || emu_read(h, blob, (size_t)n)) n = -1;
    emu_close(h);
    if (n < 0 || tfm_init(&model, blob, (uint32_t)n, arena_, (uint32_t)arena_size_) != TFM_OK) return kTfLiteError;
    in_.type = out_.type = kTfLiteInt8;
    in_.data.int8 = tfm_input(&model);
    in_.bytes = tfm_input_size(&model);
    in_.params.scale = tfn_blob_scale(blob, 0);
    in_.params.zero_point = tfm_input_zero_point(&model);
    out_.data.int8 = (int8_t *)tfm_output(&model); /* writable in TFLM too */
    out_.bytes = tfm_output_size(&model);
    out_.params.scale = tfn_blob_scale(blob, 1);
    out_.params.zero_point = tfm_output_zero_point(&model);
    runtime_ = &model;
    allocated_ = true;
    return kTfLiteOk;
}

TfLiteStatus tflite::MicroInterpreter::Invoke()
{
    if (!allocated_) return kTfLiteError;
    return tfm_invoke((const tfm_model *)runtime_) == TFM_OK ? kTfLiteOk : kTfLiteError;
}

TfLiteTensor *tflite::MicroInterpreter::input(size_t index) { return allocated_ && index == 0 ? &in_ : nullptr; }
TfLiteTensor *tflite::MicroInterpreter::output(size_t index) { return allocated_ && index == 0 ? &out_ : nullptr; }
