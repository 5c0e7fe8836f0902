// Where a network's layer outputs live in a workspace (Network): an output the backward pass reads
// stays for the whole call; any other lives only from the layer that writes it to the last one that
// reads it, and shares memory with outputs whose lives do not overlap its own.
#pragma once

#include <cstddef>
#include <vector>

namespace ebm {

struct OutputLife {
  size_t floats;  // per image
  size_t first;   // the layer that writes it
  size_t last;    // the last layer during whose call it must hold (inclusive)
};

// Offsets in floats per image, in multiples of 16 (64 bytes: a batch of n images at n times these
// offsets stays aligned): each output at the lowest offset clear of every earlier one whose life
// overlaps its own, so two outputs alive at once never share a float. Returns the floats per image
// the offsets span.
size_t plan_outputs(const std::vector<OutputLife>& lives, std::vector<size_t>* offsets);

}  // namespace ebm
