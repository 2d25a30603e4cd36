/* stb_image compiled from the system header (libstb-dev) with the fuzzer's coverage and sanitizers, so
   libFuzzer can see inside the decoder. Its definitions take precedence over the prebuilt libstb.so, which
   the rest of the program links as usual. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
