// Debian's stb_image 2.27 trusts two things in a JPEG that a corrupt file can break, both found by
// tests/fuzz/fuzz_decode_image and both fixed only in later stb releases:
//   - a DHT table's 16 code counts may sum past 256, and stbi__build_huffman then writes past its arrays;
//   - a scan may name a Huffman table that no DHT defined, and stb decodes with the uninitialised table
//     (its decoder state comes from malloc), reading far outside it.
// This walk follows the marker structure the way stb does (junk between segments skipped up to the next FF,
// entropy-coded data skipped up to the next marker that is not a stuffed 00 or a restart) and refuses those
// files first. It also catches truncation: stb pads a JPEG cut short with grey and reports success.
#include "jpeg_check.h"

namespace moco {

namespace {

std::string hex2(uint8_t v) {
  const char* digits = "0123456789ABCDEF";
  return std::string{digits[v >> 4], digits[v & 15]};
}

bool refuse(std::string* why, const std::string& reason) {
  if (why) *why = reason;
  return false;
}

// Checks the tables of one DHT segment (seg, L bytes after the length) and marks them defined.
bool check_dht(const uint8_t* seg, size_t L, bool defined[2][4], std::string* why) {
  size_t p = 0;
  while (p < L) {
    if (p + 17 > L) return refuse(why, "corrupt JPEG: DHT segment ends inside a table header");
    int tc = seg[p] >> 4, th = seg[p] & 15;
    if (tc > 1 || th > 3)
      return refuse(why, "corrupt JPEG: DHT table class " + std::to_string(tc) + " id " + std::to_string(th) +
                             ", expected class 0..1 and id 0..3");
    size_t codes = 0;
    for (int i = 1; i <= 16; ++i) codes += seg[p + (size_t)i];
    if (codes > 256)
      return refuse(why, "corrupt JPEG: Huffman table with " + std::to_string(codes) +
                             " codes, expected at most 256");
    if (p + 17 + codes > L) return refuse(why, "corrupt JPEG: DHT segment ends inside a table's symbols");
    defined[tc][th] = true;
    p += 17 + codes;
  }
  return true;
}

}  // namespace

bool jpeg_structure_ok(const uint8_t* d, size_t n, std::string* why) {
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool seen_frame = false, progressive = false;
  size_t p = 2;  // after SOI
  for (;;) {
    while (p < n && d[p] != 0xFF) ++p;  // junk between segments: stb skips it too
    while (p < n && d[p] == 0xFF) ++p;  // fill bytes
    if (p >= n)
      return refuse(why, "truncated JPEG: no end-of-image marker (" + std::to_string(n) + " bytes)");
    uint8_t m = d[p++];
    if (m == 0xD9) return true;                                 // EOI
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // no length; stb judges them
    if (p + 2 > n) return refuse(why, "truncated JPEG: cut inside the length of marker FF" + hex2(m));
    size_t len = (size_t)d[p] << 8 | d[p + 1];
    if (len < 2) return refuse(why, "corrupt JPEG: marker FF" + hex2(m) + " with length " + std::to_string(len));
    if (len > n - p)
      return refuse(why, "truncated JPEG: marker FF" + hex2(m) + " at byte " + std::to_string(p - 2) + " declares " +
                             std::to_string(len) + " bytes, the file has " + std::to_string(n - p) + " left");
    const uint8_t* seg = d + p + 2;  // (len - 2) the segment's content
    size_t L = len - 2;
    p += len;
    if (m == 0xC4) {
      if (!check_dht(seg, L, defined, why)) return false;
    } else if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
      seen_frame = true;
      progressive = m == 0xC2;
    } else if (m >= 0xC3 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      return refuse(why, "unsupported JPEG: frame marker FF" + hex2(m) +
                             " (lossless, hierarchical or arithmetic-coded); expected baseline or progressive");
    } else if (m == 0xDA) {
      if (!seen_frame) return refuse(why, "corrupt JPEG: scan before the frame header");
      size_t ns = L ? seg[0] : 0;
      if (ns < 1 || ns > 4 || L < 1 + 2 * ns + 3)
        return refuse(why, "corrupt JPEG: scan header of " + std::to_string(L) + " bytes for " +
                               std::to_string(ns) + " components");
      int ss = seg[1 + 2 * ns], ah = seg[3 + 2 * ns] >> 4;
      // Which tables stb's decoder will read in this scan.
      bool uses_dc = !progressive || (ss == 0 && ah == 0);
      bool uses_ac = !progressive || ss > 0;
      for (size_t c = 0; c < ns; ++c) {
        int td = seg[2 + 2 * c] >> 4, ta = seg[2 + 2 * c] & 15;
        if (td > 3 || ta > 3)
          return refuse(why, "corrupt JPEG: scan names Huffman tables " + std::to_string(td) + "/" +
                                 std::to_string(ta) + ", expected ids 0..3");
        if ((uses_dc && !defined[0][td]) || (uses_ac && !defined[1][ta]))
          return refuse(why, "corrupt JPEG: scan uses a Huffman table that no DHT defined");
      }
      // Entropy-coded data: FF 00 is a stuffed byte and FF D0..D7 a restart; any other FF xx ends it.
      while (p + 1 < n && !(d[p] == 0xFF && d[p + 1] != 0x00 && d[p + 1] != 0xFF && (d[p + 1] < 0xD0 || d[p + 1] > 0xD7)))
        ++p;
    }
  }
}

}  // namespace moco
