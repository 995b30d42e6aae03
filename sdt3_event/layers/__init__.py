"""Neurons and spiking blocks of the SDT model families.

Modules:
    neurons: ``MultiSpike`` (SDT-V3 integer quantiser, stateless) and ``TemporalIF`` (multi-step
        integer IF on spikingjelly 2.0's I-LIF operator); ``make_neuron`` builds either.
    attention: ``SpikeMatMulAttention``, the parameter-free ``scale·Q·Kᵀ·V`` product (linear order
        ``Q·(Kᵀ·V)`` by default, the official ``(Q·Kᵀ)·V`` order on request).
    sdt3_blocks / sdt3_large_blocks: V3 Base/DVS and Large blocks (official attribute names).
    timestep: ``to_time_major`` (model input) and ``flat_apply`` for time-major tensors.
    lif: the LIF neurons of V1/V2 (spikingjelly 2.0).
    snn: ``configure_snn`` (neuron backend, attention order) and ``reset_net``, the one place where
        an application sets them.

How a V3 model is laid out for spike-driven execution (what :mod:`sdt3_event.spikes` relies on):

* Every neuron is a :class:`~sdt3_event.layers.neurons.MultiSpike` instance (``TemporalIF`` is a
  subclass) with plain attributes ``D`` (max integer count) and ``norm`` (output divisor): it outputs
  ``counts / norm`` with ``counts`` in ``0..D``; ``output * norm`` recovers the counts.
* Every neuron output goes *directly* into a linear operator: a ``Conv2d``/``Conv1d``/``Linear``
  (possibly wrapped in ``nn.Sequential(conv, BN)`` or the Large ``RepConv1d`` chain of convs and BNs,
  all linear in eval mode), or into a :class:`~sdt3_event.layers.attention.SpikeMatMulAttention`
  (the Q, K, V neurons). No neuron output is added, pooled or multiplied elementwise before that
  operator, so ``W·(a/norm) = (1/norm)·Σ_{d=1..D} W·s_d`` with binary ``s_d`` holds exactly.
* The residual stream between blocks is real-valued (membrane shortcut) and never spiked.
* The only operators that see non-spike input are the stem conv (``downsample1_1.encode_conv``, the
  encoding layer) and, in the Large models, the main ``head`` (it receives the non-spiked pooled
  features, as in the official checkpoints).
* Tensors are time-major ``(T, B, ...)`` inside; stateless layers run on the merged ``T·B`` batch.
* The classifier neuron (attribute ``spike`` in Base/DVS, ``lif`` in Large) has ``norm = 1``.

Firing statistics: set ``neuron.record_stats = True`` to keep ``neuron.last_stats`` (mean count,
non-zero fraction, level histogram) of the last call, or attach forward hooks to the ``MultiSpike``
modules (no global state is involved either way).
"""
