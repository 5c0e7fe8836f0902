// Naive reference implementations in any floating type, kept beside the optimised layers so
// tests can compare them; in double they also give the finite differences that check gradients.
#pragma once

#include <vector>

#include "ebm/model.h"

namespace ebm {

// One layer, straight from the definition. x: [n, in]; returns [n, out].
template <class T>
std::vector<T> reference_layer_forward(const LayerSpec& l, const Model& m, const std::vector<T>& x,
                                       int n);

// The whole network: returns [n, outputs] (energies for energy models, logits for classifiers).
// sigma: a denoiser's noise level, above which a gated add passes its skip alone
// (LayerSpec::sigma_max; 0: every add adds).
template <class T>
std::vector<T> reference_forward(const Model& m, const std::vector<T>& x, int n, double sigma = 0);

// A denoiser energy E(x, sigma) (architecture.h, EnergyForm): returns [n].
template <class T>
std::vector<T> reference_denoiser_energy(const Model& m, const std::vector<T>& x, int n, T sigma);

extern template std::vector<float> reference_denoiser_energy(const Model&, const std::vector<float>&,
                                                             int, float);
extern template std::vector<double> reference_denoiser_energy(const Model&,
                                                              const std::vector<double>&, int, double);
extern template std::vector<float> reference_layer_forward(const LayerSpec&, const Model&,
                                                           const std::vector<float>&, int);
extern template std::vector<double> reference_layer_forward(const LayerSpec&, const Model&,
                                                            const std::vector<double>&, int);
extern template std::vector<float> reference_forward(const Model&, const std::vector<float>&, int,
                                                     double);
extern template std::vector<double> reference_forward(const Model&, const std::vector<double>&, int,
                                                      double);

}  // namespace ebm
