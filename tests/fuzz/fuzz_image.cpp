// libFuzzer target: the image decoder behind ebm-sample --from and the dataset readers (stb_image
// through decode_gray_image), then the resize every caller applies. Any bytes are either refused
// with ebm::Error or give a gray image whose pixel count matches its size.
#include <stb_image.h>

#include <cstdint>
#include <cstdlib>

#include "ebm/error.h"
#include "ebm/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Images near the pixel cap are valid and decode in about 0.5 s natively but 20 s under ASan,
  // which libFuzzer would report as hangs: past 2^20 pixels only the header checks run (the cap
  // itself is tested in test_image_io). The decoder's code paths do not depend on the size.
  int w = 0, h = 0, c = 0;
  if (size > 0 && stbi_info_from_memory(data, int(size), &w, &h, &c) &&
      int64_t(w) * int64_t(h) > (int64_t(1) << 20) &&
      int64_t(w) * int64_t(h) <= ebm::kMaxImagePixels && w <= ebm::kMaxImageSide &&
      h <= ebm::kMaxImageSide)
    return 0;
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
