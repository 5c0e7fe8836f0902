# ebm-sample as a user runs it. Inputs: SAMPLE, MAKE_MODEL, PRESET, WORK, and OTHER_PRESET (a
# preset of another image shape, for a guide classifier that does not fit).
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

include(${CMAKE_CURRENT_LIST_DIR}/../expect_run.cmake)

# Usage errors exit 2 and name the problem; runtime errors exit 1 and name the file.
expect_run(0 "Usage: ebm-sample" ${SAMPLE} --help)
expect_run(2 "missing --model" ${SAMPLE})
expect_run(2 "--count: expected an integer" ${SAMPLE} --model x --count zero)
expect_run(1 "cannot open" ${SAMPLE} --model ${WORK}/missing.safetensors)
file(WRITE ${WORK}/junk.safetensors "definitely not a model file")
expect_run(1 "junk.safetensors" ${SAMPLE} --model ${WORK}/junk.safetensors)

# A real run on a model with random weights: grid, frames, strip and one energy per sample.
execute_process(COMMAND ${MAKE_MODEL} ${PRESET} ${WORK}/m.safetensors 5 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model failed")
endif()
expect_run(0 "sample\tenergy" ${SAMPLE} --model ${WORK}/m.safetensors --count 3 --steps 4
           --frames ${WORK}/frames --frame-every 2 --out ${WORK}/grid.png --quiet)
foreach(f grid.png frames/frame_000000.png frames/frame_000002.png frames/frame_000004.png frames/strip.png)
  if(NOT EXISTS ${WORK}/${f})
    message(FATAL_ERROR "ebm-sample did not write ${f}")
  endif()
endforeach()
# A noise-level walk (a random unet denoiser, ddim): the frames show the denoised estimates, or
# with --noisy-frames the noisy states; the start and the finished samples are the same either way.
get_filename_component(presets ${PRESET} DIRECTORY)
execute_process(COMMAND ${MAKE_MODEL} ${presets}/unet.json ${WORK}/denoiser.safetensors 3 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (denoiser) failed")
endif()
foreach(mode denoised noisy)
  set(extra "")
  if(mode STREQUAL "noisy")
    set(extra --noisy-frames)
  endif()
  expect_run(0 "sample\tenergy" ${SAMPLE} --model ${WORK}/denoiser.safetensors --count 2 --steps 4
             --frames ${WORK}/frames_${mode} --frame-every 2 --out ${WORK}/walk_${mode}.png --quiet ${extra})
  foreach(step 000000 000002 000004)
    file(SHA256 ${WORK}/frames_${mode}/frame_${step}.png hash_${mode}_${step})
  endforeach()
endforeach()
if(NOT hash_denoised_000000 STREQUAL hash_noisy_000000 OR NOT hash_denoised_000004 STREQUAL hash_noisy_000004)
  message(FATAL_ERROR "the first and last frames should not depend on --noisy-frames")
endif()
if(hash_denoised_000002 STREQUAL hash_noisy_000002)
  message(FATAL_ERROR "the middle frame is the same with and without --noisy-frames")
endif()
execute_process(COMMAND ${SAMPLE} --model ${WORK}/m.safetensors --count 3 --steps 4 --quiet
                --out ${WORK}/grid2.png OUTPUT_VARIABLE out1)
execute_process(COMMAND ${SAMPLE} --model ${WORK}/m.safetensors --count 3 --steps 4 --quiet
                --out ${WORK}/grid3.png OUTPUT_VARIABLE out2)
if(NOT out1 STREQUAL out2)
  message(FATAL_ERROR "the same seed printed different energies:\n${out1}\n${out2}")
endif()
string(REGEX MATCHALL "\n[0-9]+\t-?[0-9.]+" rows "${out1}")
list(LENGTH rows n)
if(NOT n EQUAL 3)
  message(FATAL_ERROR "expected 3 energy rows, got ${n}:\n${out1}")
endif()
# Blends of two images.
expect_run(0 "sample\tenergy" ${SAMPLE} --model ${WORK}/m.safetensors --count 2 --steps 2 --quiet
           --from ${WORK}/grid.png,${WORK}/grid2.png --mix 0.2:0.8 --out ${WORK}/blend.png)
expect_run(1 "unknown sampler form 'hmc'" ${SAMPLE} --model ${WORK}/m.safetensors --form hmc)
expect_run(2 "--from: expected two images" ${SAMPLE} --model ${WORK}/m.safetensors --from ${WORK}/grid.png)
# Inpainting and variations: a run each, and every wrong combination named.
expect_run(0 "sample\tenergy" ${SAMPLE} --model ${WORK}/m.safetensors --count 2 --steps 2 --quiet
           --keep ${WORK}/grid.png --mask right --out ${WORK}/inpaint.png)
expect_run(0 "sample\tenergy" ${SAMPLE} --model ${WORK}/m.safetensors --count 2 --steps 2 --quiet
           --keep ${WORK}/grid.png --mask ${WORK}/grid2.png --out ${WORK}/inpaint2.png)
expect_run(0 "sample\tenergy" ${SAMPLE} --model ${WORK}/m.safetensors --count 2 --steps 4 --quiet
           --vary ${WORK}/grid.png --strength 0.5 --out ${WORK}/vary.png)
expect_run(2 "--keep needs --mask" ${SAMPLE} --model ${WORK}/m.safetensors --keep ${WORK}/grid.png)
expect_run(2 "--mask needs --keep" ${SAMPLE} --model ${WORK}/m.safetensors --mask left)
expect_run(2 "--strength goes with --vary IMAGE or --from" ${SAMPLE} --model ${WORK}/m.safetensors --strength 0.3)
# The paper form walks from the blends themselves: a strength for them is refused by name.
expect_run(1 "the paper form walks from the blends themselves" ${SAMPLE} --model ${WORK}/m.safetensors
           --from ${WORK}/grid.png,${WORK}/grid2.png --strength 0.5 --out ${WORK}/blend2.png)
expect_run(2 "--strength: expected a number" ${SAMPLE} --model ${WORK}/m.safetensors --vary ${WORK}/grid.png --strength 2)
expect_run(2 "two different starts" ${SAMPLE} --model ${WORK}/m.safetensors --vary ${WORK}/grid.png
           --from ${WORK}/grid.png,${WORK}/grid2.png)
expect_run(1 "missing-mask.png" ${SAMPLE} --model ${WORK}/m.safetensors --keep ${WORK}/grid.png
           --mask ${WORK}/missing-mask.png)
foreach(f inpaint.png inpaint2.png vary.png)
  if(NOT EXISTS ${WORK}/${f})
    message(FATAL_ERROR "ebm-sample did not write ${f}")
  endif()
endforeach()
# Guided sampling: a random classifier of the model's shape as the guide; the same seed gives the
# same samples, the guide changes them; every wrong combination named.
execute_process(COMMAND ${MAKE_MODEL} ${PRESET} ${WORK}/c.safetensors 6 f32
                arch_deck,arch_through,cable_fan,suspension_vertical RESULT_VARIABLE rc)
execute_process(COMMAND ${MAKE_MODEL} ${OTHER_PRESET} ${WORK}/c_other.safetensors 6 f32
                arch_deck,cable_fan RESULT_VARIABLE rc2)
if(NOT rc EQUAL 0 OR NOT rc2 EQUAL 0)
  message(FATAL_ERROR "make_test_model failed for the classifiers")
endif()
set(guided ${SAMPLE} --model ${WORK}/m.safetensors --count 3 --steps 4 --quiet
    --classifier ${WORK}/c.safetensors)
expect_run(0 "guide: arch:0.5,suspension:0.5" ${guided} --guide arch:0.5,suspension:0.5
           --guide-scale 50 --out ${WORK}/guided.png)
execute_process(COMMAND ${guided} --guide cable_fan --guide-scale 50 --out ${WORK}/g1.png
                OUTPUT_VARIABLE g1)
execute_process(COMMAND ${guided} --guide cable_fan --guide-scale 50 --out ${WORK}/g2.png
                OUTPUT_VARIABLE g2)
if(NOT g1 STREQUAL g2)
  message(FATAL_ERROR "the same seed and guide printed different energies:\n${g1}\n${g2}")
endif()
if(g1 STREQUAL out1)
  message(FATAL_ERROR "the guide changed nothing:\n${g1}")
endif()
execute_process(COMMAND ${guided} --guide cable_fan --guide-scale 0 --out ${WORK}/g0.png
                OUTPUT_VARIABLE g0)
if(NOT g0 STREQUAL out1)
  message(FATAL_ERROR "--guide-scale 0 is not the unguided sampler:\n${g0}\n${out1}")
endif()
expect_run(2 "--guide-scale goes with --guide" ${SAMPLE} --model ${WORK}/m.safetensors --guide-scale 2)
expect_run(2 "--classifier goes with --guide" ${SAMPLE} --model ${WORK}/m.safetensors
           --classifier ${WORK}/c.safetensors)
expect_run(2 "--guide-denoised goes with --guide" ${SAMPLE} --model ${WORK}/m.safetensors --guide-denoised)
expect_run(1 "needs a noise-level sampler form" ${guided} --guide arch --guide-denoised)
expect_run(2 "--guide-scale: expected a number" ${guided} --guide arch --guide-scale -1)
expect_run(1 "unknown guide target 'truss' (families arch, cable, suspension" ${guided} --guide truss)
expect_run(1 "'arch:0'" ${guided} --guide arch:0,cable:1)
expect_run(1 "the guide classifier takes 1x48x192 images but the energy model makes 1x32x32"
           ${SAMPLE} --model ${WORK}/m.safetensors --guide arch --classifier ${WORK}/c_other.safetensors)
expect_run(1 "needs a classifier" ${SAMPLE} --model ${WORK}/m.safetensors --guide arch
           --classifier ${WORK}/m.safetensors)
expect_run(1 "missing-classifier.safetensors" ${SAMPLE} --model ${WORK}/m.safetensors --guide arch
           --classifier ${WORK}/missing-classifier.safetensors)
