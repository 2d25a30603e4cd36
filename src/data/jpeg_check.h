// A structural check of a JPEG file, run before stb_image sees it. See jpeg_check.cpp for why.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace moco {

// Walks the JPEG markers from SOI to EOI. Returns false, with the reason in *why, for a file that ends before
// EOI (truncated), a segment that overruns the file, a Huffman table of more than 256 codes, or a scan that
// uses a Huffman table no DHT defined.
bool jpeg_structure_ok(const uint8_t* d, size_t n, std::string* why);

}  // namespace moco
