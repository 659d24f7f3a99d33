/* TinyFleet shim -- NOT the library. Chirale_TensorFlowLite
 * (spaziochirale/Chirale_TensorFlowLite, Arduino packaging of TFLM): the sketch includes
 * this name first, then the TFLM headers below, as the library's hello_world example does.
 * TFLM's sources are not available offline: the shim's interpreter (../emu/tflm_emu.cpp)
 * runs the equivalent TinyFleet model blob with tfm_runtime, which is bit-exact with
 * TFLM for the supported ops. It checks the sketch's TFLM glue, not TFLM. */
#ifndef TFN_SHIM_CHIRALE_TENSORFLOWLITE_H
#define TFN_SHIM_CHIRALE_TENSORFLOWLITE_H
#include "Arduino.h"
#endif
