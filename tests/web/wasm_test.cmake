# The node test of the wasm module. Inputs: NODE, MAKE_MODEL, REFERENCE, PRESET, SITE, WORK, SCRIPT.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${MAKE_MODEL} ${PRESET} ${WORK}/model.safetensors 17 f16 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model failed")
endif()
# And a noise-conditional model (the unet preset beside PRESET, random weights).
get_filename_component(presets_dir ${PRESET} DIRECTORY)
execute_process(COMMAND ${MAKE_MODEL} ${presets_dir}/unet.json ${WORK}/denoiser.safetensors 3 f16
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (denoiser) failed")
endif()
# And one that carries a weaker network for autoguidance (format 3).
execute_process(COMMAND ${MAKE_MODEL} ${presets_dir}/unet.json ${WORK}/autoguided.safetensors 4 f16 ""
                        autoguide RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (autoguided) failed")
endif()
# And a classifier over the eight subtypes (random weights), the guide of the guided samplers.
execute_process(COMMAND ${MAKE_MODEL} ${PRESET} ${WORK}/classifier.safetensors 5 f16
                "arch_deck,arch_through,beam_girder,beam_vpier,cable_fan,cable_harp,suspension_inclined,suspension_vertical"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (classifier) failed")
endif()
execute_process(COMMAND ${REFERENCE} ${WORK}/model.safetensors ${WORK} ${WORK}/denoiser.safetensors
                ${WORK}/classifier.safetensors ${WORK}/autoguided.safetensors RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "wasm_reference failed")
endif()
set(ENV{EBM_SITE} ${SITE})
set(ENV{EBM_WORK} ${WORK})
execute_process(COMMAND ${NODE} --test ${SCRIPT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "node test failed (exit ${rc})")
endif()
