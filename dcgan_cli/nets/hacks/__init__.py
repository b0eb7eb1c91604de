"""The GAN hacks: one function each, its "on" and "off" branches side by side, in one module per family:

- architecture: 1 strided convolutions, 2 transposed convolutions, 3 LeakyReLU, 4 batch norm, 5 Gaussian init,
  15 dropout in G, 16 spectral norm, 19 minibatch standard deviation
- optimisers: 6 Adam, 12 TTUR, 13 training D more
- pixels: 7 images in [-1, 1] with tanh, 8 a Gaussian latent
- labels: 9 separate batches, 10 label smoothing, 11 noisy labels
- d_inputs: 14 instance noise, 20 DiffAugment, 23 adaptive augmentation
- penalties: 17 the hinge loss, 18 R1, 24 LeCam
- memory: 21 class conditioning, 22 experience replay

Only these modules read the `hacks` config section, so flipping one switch changes exactly one thing. "Off" is
always a concrete, documented alternative, so an ablation compares two real settings. Call them through this
package (hacks.downsample, ...).

Sources: DCGAN = Radford, Metz & Chintala (2015), "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks"; ganhacks = Chintala et al., "How to Train a GAN?" (github.com/soumith/ganhacks);
Salimans et al. (2016), "Improved Techniques for Training GANs". Hacks 12 onward name their own sources.
"""

from dcgan_cli.nets.hacks.architecture import (
                                               activation,
                                               batch_norm,
                                               conv_bias,
                                               downsample,
                                               g_dropout,
                                               kernel_initializer,
                                               minibatch_std,
                                               spectral_norm,
                                               upsample,
)
from dcgan_cli.nets.hacks.d_inputs import (
                                               ADAPTIVE_STATE,
                                               adapt,
                                               adaptive_augment,
                                               augment_draws,
                                               augment_gates,
                                               augment_strength,
                                               diff_augment,
                                               instance_noise,
                                               noise_std,
)
from dcgan_cli.nets.hacks.labels import (
                                               d_batch_plan,
                                               fake_label_mean,
                                               flip_labels,
                                               smooth_labels,
)
from dcgan_cli.nets.hacks.memory import (
                                               CLASS_NORM_STDDEV,
                                               class_head,
                                               class_input,
                                               class_loss,
                                               class_norm,
                                               conditional_norm_off,
                                               replay,
)
from dcgan_cli.nets.hacks.optimisers import d_steps, learning_rate, optimizer
from dcgan_cli.nets.hacks.penalties import lecam, objective, r1_due, r1_penalty
from dcgan_cli.nets.hacks.pixels import (
                                               as_float32,
                                               output_activation,
                                               sample_latent,
                                               scale_images,
                                               unscale_images,
)

__all__ = [
    "ADAPTIVE_STATE", "CLASS_NORM_STDDEV", "activation", "adapt", "adaptive_augment", "as_float32", "augment_draws",
    "augment_gates", "augment_strength", "batch_norm", "class_head", "class_input", "class_loss", "class_norm",
    "conditional_norm_off", "conv_bias", "d_batch_plan", "d_steps", "diff_augment", "downsample", "fake_label_mean",
    "flip_labels", "g_dropout", "instance_noise", "kernel_initializer", "learning_rate", "lecam", "minibatch_std",
    "noise_std", "objective", "optimizer", "output_activation", "r1_due", "r1_penalty", "replay", "sample_latent",
    "scale_images", "smooth_labels", "spectral_norm", "unscale_images", "upsample",
]
