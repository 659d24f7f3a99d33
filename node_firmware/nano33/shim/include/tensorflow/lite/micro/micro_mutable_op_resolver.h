/* TinyFleet shim -- NOT TFLM. tflite::MicroMutableOpResolver<N>
 * (tensorflow/tflite-micro tensorflow/lite/micro/micro_mutable_op_resolver.h): the Add
 * methods the sketch calls. The real ones take a registration argument with a default
 * and return kTfLiteError when more than N ops are added; so do these. */
#ifndef TFN_SHIM_MICRO_MUTABLE_OP_RESOLVER_H
#define TFN_SHIM_MICRO_MUTABLE_OP_RESOLVER_H

#include "tensorflow/lite/micro/micro_interpreter.h"

namespace tflite {

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
public:
    MicroMutableOpResolver() : MicroOpResolver(tOpCount) {}
    TfLiteStatus AddFullyConnected() { return AddOp(kShimFullyConnected); }
    TfLiteStatus AddConv2D() { return AddOp(kShimConv2D); }
    TfLiteStatus AddDepthwiseConv2D() { return AddOp(kShimDepthwiseConv2D); }
    TfLiteStatus AddAveragePool2D() { return AddOp(kShimAveragePool2D); }
    TfLiteStatus AddMaxPool2D() { return AddOp(kShimMaxPool2D); }
    TfLiteStatus AddReshape() { return AddOp(kShimReshape); }
    TfLiteStatus AddSoftmax() { return AddOp(kShimSoftmax); }
    TfLiteStatus AddLogistic() { return AddOp(kShimLogistic); }
    TfLiteStatus AddTanh() { return AddOp(kShimTanh); }
    TfLiteStatus AddAdd() { return AddOp(kShimAdd); }
    TfLiteStatus AddMean() { return AddOp(kShimMean); }
    TfLiteStatus AddQuantize() { return AddOp(kShimQuantize); }
};

} // namespace tflite

#endif
