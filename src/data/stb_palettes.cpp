// Full palettes for stb_image (and PNG without empty IDAT chunks). stb 2.27 keeps a PNG's or BMP's palette in a fixed stack array that it fills
// only as far as the file's palette goes, and looks pixel indices up in it without a bound, so an index past
// the palette reads uninitialised stack bytes into the image. Pillow gives black for such an index. These
// copies of the file carry a palette of 256 entries, the file's own followed by black ones, so that stb reads
// only initialised bytes, and the ones Pillow shows. Internal to src/data.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "image_decoders.h"

namespace moco::detail {

namespace {

void put_le32(uint8_t* p, uint32_t v) {
  for (int k = 0; k < 4; ++k) p[k] = (uint8_t)(v >> (8 * k));
}
void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back((uint8_t)(v >> s));
}

}  // namespace

bool png_with_full_palette(const uint8_t* d, size_t n, std::vector<uint8_t>& copy) {
  if (n < 26 || std::memcmp(d + 12, "IHDR", 4) != 0) return false;
  const bool indexed = d[25] == 3;  // colour type 3
  // The chunks, already checked to lie within the file (png_chunks_fit), copied as they are except: a short
  // PLTE of an indexed image, padded; and empty IDAT chunks, left out (legal, but stb then copies 0 bytes to a
  // null buffer, which the fuzzer's UBSan reports as undefined behaviour).
  // what changes: a chunk to leave out or to pad (a first pass, so that most files are not copied at all)
  const auto drops = [&](const uint8_t* type, uint32_t len) { return len == 0 && std::memcmp(type, "IDAT", 4) == 0; };
  const auto pads = [&](const uint8_t* type, uint32_t len) {
    return indexed && std::memcmp(type, "PLTE", 4) == 0 && len % 3 == 0 && len < 768;
  };
  bool changed = false;
  for (size_t pos = 8; pos + 12 <= n;) {
    const uint32_t len = be32(d + pos);
    if ((uint64_t)len + 12 > n - pos) return false;
    changed = changed || drops(d + pos + 4, len) || pads(d + pos + 4, len);
    if (std::memcmp(d + pos + 4, "IEND", 4) == 0) break;
    pos += 12 + (size_t)len;
  }
  if (!changed) return false;
  std::vector<uint8_t> out;
  out.reserve(n + 768);
  out.insert(out.end(), d, d + 8);
  size_t pos = 8;
  while (pos + 12 <= n) {
    const uint32_t len = be32(d + pos);
    const uint8_t* type = d + pos + 4;
    const size_t whole = 12 + (size_t)len;
    if (drops(type, len)) {
      // left out
    } else if (pads(type, len)) {
      put_be32(out, 768);
      out.insert(out.end(), {'P', 'L', 'T', 'E'});
      out.insert(out.end(), d + pos + 8, d + pos + 8 + len);
      out.insert(out.end(), 768 - len, 0);  // black
      put_be32(out, 0);                     // the CRC, which stb does not check
    } else {
      out.insert(out.end(), d + pos, d + pos + whole);
    }
    pos += whole;
    if (std::memcmp(type, "IEND", 4) == 0) break;
  }
  out.insert(out.end(), d + pos, d + n);  // whatever follows, as stb would have seen it
  copy.swap(out);
  return true;
}

bool bmp_with_full_palette(const uint8_t* d, size_t n, std::vector<uint8_t>& copy) {
  if (n < 14 + 16) return false;
  const uint32_t offset = le32(d + 10), hsz = le32(d + 14);
  if (hsz != 12 && hsz < 40) return false;  // leave odd headers to stb's own checks
  if (14 + (size_t)hsz + 16 > n) return false;
  const int bits = hsz == 12 ? d[14 + 10] | d[14 + 11] << 8 : d[14 + 14] | d[14 + 15] << 8;
  if (bits != 1 && bits != 4 && bits != 8) return false;  // no palette
  const size_t entry = hsz == 12 ? 3 : 4;
  // Pillow reads biClrUsed entries right after the header (all 2^bits when it is 0), as many as the file has
  const uint32_t used = hsz == 12 ? 0 : le32(d + 14 + 32);
  const size_t colours = used == 0 || used > (1u << bits) ? (size_t)1 << bits : used;
  const size_t pal_at = 14 + (size_t)hsz;
  if (offset < pal_at || offset > n) return false;  // stb refuses these
  const size_t have = std::min(colours, (n - pal_at) / entry);
  // stb counts an OS/2 (12-byte header) palette as (offset - 38) / 3 entries, 4 fewer than there are: 260
  // written there make 256 that it reads
  const size_t slots = hsz == 12 ? 260 : 256;
  copy.clear();
  copy.reserve(pal_at + slots * entry + (n - offset));
  copy.insert(copy.end(), d, d + pal_at);
  copy.insert(copy.end(), d + pal_at, d + pal_at + have * entry);
  copy.insert(copy.end(), (slots - have) * entry, 0);  // black
  const size_t new_offset = copy.size();
  copy.insert(copy.end(), d + offset, d + n);
  put_le32(copy.data() + 10, (uint32_t)new_offset);
  put_le32(copy.data() + 2, (uint32_t)copy.size());
  if (hsz != 12) put_le32(copy.data() + 14 + 32, 0);  // 2^bits colours in use
  return true;
}

}  // namespace moco::detail
