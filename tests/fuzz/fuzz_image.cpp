// libFuzzer target: the image decoder behind ebm-sample --from and the dataset readers (stb_image
// through decode_gray_image), then the resize every caller applies. Any bytes are either refused
// with ebm::Error or give a gray image whose pixel count matches its size.
#include <cstdint>
#include <cstdlib>

#include "ebm/error.h"
#include "ebm/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ebm::Image img;
  try {
    img = ebm::decode_gray_image(data, size, "fuzz input");
  } catch (const ebm::Error&) {
    return 0;
  }
  if (img.channels != 1 || img.width < 1 || img.height < 1 ||
      img.pixels.size() != size_t(img.width) * size_t(img.height))
    std::abort();
  const ebm::Image small = ebm::resize_gray(img, 24, 12);
  if (small.pixels.size() != 24u * 12u) std::abort();
  return 0;
}
