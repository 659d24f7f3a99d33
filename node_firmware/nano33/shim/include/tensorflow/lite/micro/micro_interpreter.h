/* TinyFleet shim -- NOT TFLM. tflite::MicroInterpreter
 * (tensorflow/tflite-micro tensorflow/lite/micro/micro_interpreter.h) and the C types the
 * sketch touches (tensorflow/lite/c/common.h, c_api_types.h: TfLiteStatus, TfLiteTensor
 * with type, data.int8, params.scale/zero_point, bytes). */
#ifndef TFN_SHIM_MICRO_INTERPRETER_H
#define TFN_SHIM_MICRO_INTERPRETER_H

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/schema/schema_generated.h"

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt8 = 9 } TfLiteType;
typedef struct TfLiteQuantizationParams {
    float scale;
    int32_t zero_point;
} TfLiteQuantizationParams;
typedef union TfLitePtrUnion {
    int8_t *int8;
    float *f;
    void *data;
} TfLitePtrUnion;
typedef struct TfLiteTensor {
    TfLiteType type;
    TfLitePtrUnion data;
    TfLiteQuantizationParams params;
    size_t bytes;
} TfLiteTensor;

namespace tflite {

enum ShimOp { /* the shim resolver's bookkeeping, not a TFLM type */
    kShimFullyConnected, kShimConv2D, kShimDepthwiseConv2D, kShimAveragePool2D, kShimMaxPool2D,
    kShimReshape, kShimSoftmax, kShimLogistic, kShimTanh, kShimAdd, kShimMean, kShimQuantize, kShimOps
};

class MicroOpResolver {
public:
    explicit MicroOpResolver(unsigned int capacity);
    TfLiteStatus AddOp(ShimOp op);
    bool Has(ShimOp op) const;

private:
    unsigned int capacity_, count_;
    uint32_t ops_;
};

class MicroResourceVariables;
class MicroProfilerInterface;

class MicroInterpreter {
public:
    MicroInterpreter(const Model *model, const MicroOpResolver &op_resolver, uint8_t *tensor_arena,
                     size_t tensor_arena_size, MicroResourceVariables *resource_variables = nullptr,
                     MicroProfilerInterface *profiler = nullptr, bool preserve_all_tensors = false);
    TfLiteStatus AllocateTensors();
    TfLiteStatus Invoke();
    TfLiteTensor *input(size_t index);
    TfLiteTensor *output(size_t index);

private: /* the emulator's state */
    const Model *model_;
    const MicroOpResolver &resolver_;
    uint8_t *arena_;
    size_t arena_size_;
    bool allocated_;
    TfLiteTensor in_, out_;
    void *runtime_;
};

} // namespace tflite

#endif
