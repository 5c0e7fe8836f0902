// The forms a layer's arithmetic can take where the runtime implements more than one. The choice
// is read when a layer is built (make_layer, so when a Network is made): networks built before a
// change keep their form. Tests and benchmarks set it to compare the forms side by side.
#pragma once

namespace ebm {

// 3x3 convolutions with at least 8 input channels (forward) or output channels (the gradient):
// of stride 1, Winograd's F(2x2, 3x3), its F(4x4, 3x3) (kWinograd4; 2.25 products per output
// instead of 4, larger transforms) or the direct GEMM over shifted rows of the padded image;
// of stride 2 (where the taps do not take them and the strided form is not kIm2col or kPhases),
// a stride-2 form of Winograd's (25 products per 2x2 block and pair of channels instead of 36;
// kWinograd and kWinograd4 alike) or the direct GEMM over stride phases.
enum class Conv3x3Form { kAuto, kDirect, kWinograd, kWinograd4 };
void set_conv3x3_form(Conv3x3Form form);
Conv3x3Form conv3x3_form();
// What kAuto takes in this build on this core: Winograd where a SIMD vector holds 4 floats
// (WebAssembly SIMD128, SSE, NEON), where it measured 1.2-1.3x faster on the shipped U-Net (stride
// 1) and 1.11-1.13x on the paper network (stride 2), and only for layers with at least 8 channels
// in and out (narrower ones ran faster direct); for stride 1 F(4x4, 3x3) on planes of at least 16
// blocks of 4x4 (the U-Net's 48x192, 24x96 and 12x48: a walk of the shipped sampler 1.18x faster
// than with F(2x2, 3x3) everywhere) and F(2x2, 3x3) on smaller ones. With AVX and AVX-512 the
// direct form, whose GEMM runs close to the core's peak and was as fast or faster on a full-width
// AVX-512 core (AMD's Zen 5: 0.84x for stride 2, 0.8x and 0.65x for F(2x2, 3x3) and F(4x4, 3x3)
// on the U-Net; bench/README.md), except the gradient of a stride-2 layer with at least 48
// channels in and out (the paper network's 64 -> 128, the U-Net's 48 -> 96): by Winograd's form
// about 0.8x the time at 4 and 8 images and the same at 1. On an AVX-512 core that splits a
// 512-bit multiply-add in two (halves_wide_multiply_adds, AMD's Zen 4), whose multiply-adds cost
// twice what they do on a full-width one, stride-1 layers with at least 8 channels in and out
// take F(4x4, 3x3) on planes of at least 32 blocks of 4x4, F(2x2, 3x3) on smaller ones from 48
// channels, else the direct form: a Langevin step of the shipped U-Net 0.85-0.87x the time at 4
// images, 0.88-0.94x at 1; the Fashion-MNIST model's small planes stay direct (wasm's rule took
// its step 1.39-1.44x the time). Strided layers keep the AVX-512 rule (the 4-lane rule for them
// measured no faster; bench/README.md). True where stride-1 layers may take Winograd's forms.
bool winograd_by_default();

// Stride-1 convolutions the shifted form does not take (padding that widens a row by more than a
// quarter, such as the U-Net's 3x13 bottleneck over 3x12 planes), and strided ones into small
// planes with at least 16 channels in and out: by taps over interleaved images, skipping the taps
// that meet padding (true, the default), or as im2col and one GEMM per chunk of images (false;
// bench/README.md compares the two).
void set_conv_taps(bool on);
bool conv_taps();

// The taps' GEMMs (above): the output's channels as their rows and the pixels of a chunk of
// images as their columns, or the pixels as rows and the channels as columns (the pixels packed
// per call, the weights once more at construction). The same products summed in the same order,
// to the bit. kAuto takes, per chunk, the one whose register tiles compute less padding, with
// the packing counted: natively the pixels for one image of a plane 12 wide (the paper network's
// fourth layer, the shipped U-Net's bottleneck), whose 12 columns fill 12 of a tile's 32; where
// a tile is 8 columns (wasm, SSE, NEON) always the channels, without the second packing.
enum class ConvTapRows { kAuto, kChannels, kPixels };
void set_conv_tap_rows(ConvTapRows rows);
ConvTapRows conv_tap_rows();

// Strided convolutions the taps do not take: im2col and one GEMM per chunk of images, or GEMMs
// over shifted rows of the zero-padded input split into its stride phases (no im2col, no
// col2im; the forward pass is im2col's to the bit). kAuto takes the phases forward where they
// widen a row by at most a quarter (the paper network's first three layers), and for dx where
// the GEMMs are also large enough (its second layer; bench/README.md); kPhases takes them for
// both directions of every such layer (tests), kIm2col for none.
enum class ConvStridedForm { kAuto, kIm2col, kPhases };
void set_conv_strided_form(ConvStridedForm form);
ConvStridedForm conv_strided_form();

// The shifted and phase forms (above) compute each output row over the padded row's width: as
// NR-wide tiles across the padded rows, then copying the rows out without their padding
// columns, or (true, the default) in tiles of each row written straight into the output, where
// those span no more columns than the padded row (in wasm, where a tile is 8 floats, rows 24, 48
// or 96 wide; natively, 32 or 16 floats, rows 96 wide). The same sums either way, to the bit.
void set_conv_row_tiles(bool on);
bool conv_row_tiles();

// The GEMM micro-kernel's loop over the depth (every product the layers run): one step an
// iteration or two. The same sums in the same order, to the bit; read on every product, not when
// a layer is built. kAuto takes two in WebAssembly in a browser, where Chromium's optimizing tier
// (Turboshaft) checks for interrupts and works out the tile's addresses once per iteration: the
// paper network's step 1.07-1.09x faster in Chromium 156 with two. One in node, whose V8 11
// (node 20) schedules both steps' loads first and spills accumulators (1.4x slower with two), and
// natively, where two ran 1% slower (bench/README.md).
enum class GemmDepthSteps { kAuto, kOne, kTwo };
void set_gemm_depth_steps(GemmDepthSteps steps);
GemmDepthSteps gemm_depth_steps();

// The ceiling of this build's arithmetic on one thread: `rounds` rounds of a dozen independent
// chains a = a * b + c, from a = 0, in every lane of the GEMM's vectors, written as
// the micro-kernel's multiply-adds are (fused where the target has FMA; in WebAssembly SIMD128 a
// multiply and an add). Returns the sum of every lane's a, so the work cannot be skipped: with
// b = c = 1, rounds * multiply_add_probe_floats(). bench/run.mjs times it beside the peers and
// states each place's ceiling: the image-step's multiply-adds at this rate.
double multiply_add_probe(int rounds, float b, float c);
int multiply_add_probe_floats();  // lanes per round: the chains times the vector's floats

// Whether this build has AVX-512 and runs on a core that executes a 512-bit multiply-add as two
// 256-bit halves: AMD's family 19h (Zen 4; Zen 3 has no AVX-512), from CPUID. Its ceiling is half
// a full-width core's at the same clock (bench/run.mjs: 115 GFLOP/s on one Zen 4 core at 2.6 GHz
// nominal against 233 on a Zen 5 core), so fewer multiply-adds pay more (winograd_by_default).
// False in other builds.
bool halves_wide_multiply_adds();

}  // namespace ebm
