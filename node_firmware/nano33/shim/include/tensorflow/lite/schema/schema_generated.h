/* TinyFleet shim -- NOT TFLM. tflite::Model and tflite::GetModel
 * (tensorflow/tflite-micro tensorflow/lite/schema/schema_generated.h). */
#ifndef TFN_SHIM_TFLITE_SCHEMA_GENERATED_H
#define TFN_SHIM_TFLITE_SCHEMA_GENERATED_H

namespace tflite {
struct Model; /* the flatbuffer root; opaque here */
const Model *GetModel(const void *buf);
} // namespace tflite

#endif
