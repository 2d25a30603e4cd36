// Decoding one untrusted JPEG with libjpeg-turbo's libjpeg API, configured as Pillow configures it, so the
// pixels are the ones torchvision's loader (PIL.Image.open(f).convert("RGB")) sees:
//   - the default accurate integer IDCT (JDCT_ISLOW) and fancy (smoothed) chroma upsampling;
//   - YCbCr and RGB files to RGB, grey files replicated to RGB;
//   - CMYK and YCCK files read as CMYK, un-inverted when an Adobe marker says the file stores them inverted
//     (Pillow's "CMYK;I"), then turned into RGB with Pillow's cmyk2rgb arithmetic.
// tests/test_decode_vs_pil.cpp holds this to Pillow bit for bit; bench/decode.cpp measures it against stb.
//
// Defences (the file is untrusted): the caller has already walked the marker structure (jpeg_check.cpp); here
// the frame header is checked against the limits before any pixel buffer exists, libjpeg's own memory is
// capped, and a progressive file may have at most kMaxScans scans (each scan re-reads every coefficient, so a
// small file of thousands of scans is a CPU bomb). libjpeg reports a fatal error by calling error_exit, which
// must not return; ours longjmps back into decode_jpeg. Warnings (corrupt entropy data that libjpeg repairs)
// are ignored, as Pillow ignores them.
// jpeglib.h uses size_t and FILE without including their headers.
#include <cstddef>
#include <cstdio>

#include <jpeglib.h>

#include <csetjmp>
#include <string>
#include <vector>

#include "image_decoders.h"

namespace moco {

namespace {

constexpr int kMaxScans = 500;                      // progressive scans allowed per file
constexpr long kMaxLibjpegMemory = 512L << 20;      // bytes libjpeg may allocate for its own buffers

// libjpeg's error manager, extended with the place to jump back to and the message of the fatal error.
struct ErrorTrap {
  jpeg_error_mgr pub;
  std::jmp_buf back;
  char message[JMSG_LENGTH_MAX];
};

// Called by libjpeg on a fatal error. Formats the message while the decoder state is intact, then leaves.
void on_fatal_error(j_common_ptr cinfo) {
  auto* trap = reinterpret_cast<ErrorTrap*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, trap->message);
  std::longjmp(trap->back, 1);
}

void ignore_message(j_common_ptr, int) {}

// The progress hook: refuses a progressive file past kMaxScans scans.
struct ScanLimit {
  jpeg_progress_mgr pub;
};

void check_scan_count(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxScans) {
    auto* trap = reinterpret_cast<ErrorTrap*>(cinfo->err);
    std::snprintf(trap->message, sizeof trap->message, "progressive JPEG with more than %d scans", kMaxScans);
    std::longjmp(trap->back, 1);
  }
}

}  // namespace

namespace detail {

bool decode_jpeg(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits) {
  jpeg_decompress_struct cinfo{};  // zeroed: destroying it before jpeg_create_decompress is a no-op
  // Destroys the decompressor on every way out: returns, the jump back from libjpeg, and a bad_alloc from
  // the pixel buffers.
  struct Destroy {
    jpeg_decompress_struct* c;
    ~Destroy() { jpeg_destroy_decompress(c); }
  } destroy{&cinfo};
  ErrorTrap trap;
  ScanLimit progress;
  std::vector<uint8_t> cmyk_row;  // (W, 4), only for CMYK/YCCK files
  // Everything the jump may skip over is declared above (so no lifetime ends by it); after setjmp only
  // libjpeg calls and writes into objects that outlive the jump.
  cinfo.err = jpeg_std_error(&trap.pub);
  trap.pub.error_exit = on_fatal_error;
  trap.pub.emit_message = ignore_message;
  trap.message[0] = '\0';
  if (setjmp(trap.back)) {
    out = Image{};
    if (why) *why = std::string("cannot decode JPEG: ") + trap.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  cinfo.mem->max_memory_to_use = kMaxLibjpegMemory;
  progress.pub.progress_monitor = check_scan_count;
  cinfo.progress = &progress.pub;
  jpeg_mem_src(&cinfo, data, (unsigned long)n);
  jpeg_read_header(&cinfo, TRUE);

  const int w = (int)cinfo.image_width, h = (int)cinfo.image_height;
  if (w < 1 || h < 1 || w > limits.max_side || h > limits.max_side || (int64_t)w * h > limits.max_pixels) {
    if (why)
      *why = "JPEG of " + std::to_string(w) + " x " + std::to_string(h) + " pixels, expected each side in 1.." +
             std::to_string(limits.max_side) + " and at most " + std::to_string(limits.max_pixels) + " pixels";
    return false;
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  // Adobe files store CMYK inverted (Pillow's "CMYK;I"); libjpeg hands the stored values through.
  const bool inverted = cmyk && cinfo.saw_Adobe_marker;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // grey to RGB replicates, as convert("RGB") does
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);

  out.w = w;
  out.h = h;
  out.pixels.resize((size_t)w * h * 3);  // (H, W, 3)
  if (cmyk) cmyk_row.resize((size_t)w * 4);
  while (cinfo.output_scanline < cinfo.output_height) {
    const size_t y = cinfo.output_scanline;
    uint8_t* rgb = out.pixels.data() + y * (size_t)w * 3;
    JSAMPROW row = cmyk ? cmyk_row.data() : rgb;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (!cmyk) continue;
    for (int x = 0; x < w; ++x) {
      const uint8_t* p = cmyk_row.data() + (size_t)x * 4;
      const int flip = inverted ? 255 : 0;  // un-inverts with XOR: 255 - v == v ^ 255 for bytes
      const int nk = 255 - (p[3] ^ flip);
      for (int c = 0; c < 3; ++c) rgb[(size_t)x * 3 + c] = cmyk_channel(p[c] ^ flip, nk);
    }
  }
  jpeg_finish_decompress(&cinfo);
  return true;
}

}  // namespace detail

}  // namespace moco
