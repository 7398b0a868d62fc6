"""The search's compiled step: the loss terms, the one- and bi-level updates, the α steps
(gradient, REINFORCE) and the budgets' multipliers, as a mixin of `tfnas.search.loop.Search`.

Single-Path NAS (Stamoulis et al., Eq. 8) is one-level: one loss trains the supernet's weights
and its thresholds together. Multi-path methods (DARTS Sec. 2.3, FBNet, ProxylessNAS, LightNAS)
are bi-level: a weight step on CE with a training batch, then an α step on the full loss with a
held-out batch (`Method.bi_level`; the α update is `Method.arch_update`). Everything that
changes during the search (λ, multipliers, the warm-up gate, the REINFORCE baseline) is a
variable updated inside the step, so the step compiles once per phase (and under XLA).

The mixin reads the attributes `Search.__init__` sets: config, strategy, model, method,
multi_path, optimizer, arch_optimizer, weight_variables, architecture_variables, lam,
arch_on, multipliers, lam_steps, baseline, baseline_set and the cache `_steps`.
"""

from __future__ import annotations

from typing import Any, Callable


class SearchStep:
    """The step of a search (see the module docstring)."""

    config: Any
    method: Any
    strategy: Any
    model: Any
    _steps: dict[bool, Callable[..., dict[str, Any]]]

    def loss_terms(self, images: Any, labels: Any, sampled: bool = False) -> dict[str, Any]:
        """Forward pass and costs under the caller's tape: loss, ce, cost, accuracy and each
        budget's cost (`cost_<name>`), per replica, CE averaged over the global batch.
        `sampled`: the cost terms price the network the forward pass sampled (REINFORCE)."""
        import tensorflow as tf

        from tfnas.search import supernet

        config = self.config
        logits = tf.cast(self.model(images, training=True), tf.float32)
        per_example = tf.keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                      from_logits=True)
        ce = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
        replicas = self.strategy.num_replicas_in_sync
        cost = tf.cast(supernet.expected_cost(self.model, config.cost_model,
                                              "sampled" if sampled else "loss"), tf.float32)
        # cost terms are the same on every replica; gradients are summed across replicas
        penalty = 0.0
        if config.objective is not None:
            penalty = self.lam * config.objective.penalty(cost)
        terms = {"ce": ce, "cost": cost / replicas}
        for c, lam in zip(config.constraints, self.multipliers):
            value = tf.cast(supernet.expected_cost(
                self.model, c.cost_model, "sampled" if sampled else self.method.budget_view),
                tf.float32)
            penalty = penalty + self.arch_on * c.penalty(lam, value)
            terms[f"cost_{c.name}"] = value / replicas
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                   tf.cast(labels, tf.int32)), tf.float32)
        terms["accuracy"] = tf.reduce_sum(correct) / config.batch_size
        terms["loss"] = ce + penalty / replicas
        return terms

    def _update_multipliers(self, terms: dict[str, Any]) -> None:
        """λ_c ← λ_c + η·(R_c/T_c − 1) after the warm-up (LightNAS Eq. 11), inside the step."""
        replicas = self.strategy.num_replicas_in_sync
        for c, lam, eta in zip(self.config.constraints, self.multipliers, self.lam_steps):
            value = terms[f"cost_{c.name}"] * replicas
            lam.assign(c.next_lam(lam, value, eta * self.arch_on))

    def _step_function(self, train_arch: bool) -> Callable[..., dict[str, Any]]:
        """The compiled distributed step. One-level (superkernel): one gradient step on the
        full loss for weights and thresholds. Bi-level (multi-path): a weight step on CE with
        a training batch, then (`train_arch`, i.e. after the warm-up) an α step on the full
        loss with a held-out batch; the step takes both batches."""
        train_arch = train_arch and self.multi_path  # (one level: the same step throughout)
        if train_arch in self._steps:
            return self._steps[train_arch]
        import tensorflow as tf

        from tfnas.search import supernet
        from tfnas.search.layers.mixed import arch_phase

        def one_level(images: Any, labels: Any) -> dict[str, Any]:
            with tf.GradientTape() as tape:
                terms = self.loss_terms(images, labels)
            grads = tape.gradient(terms["loss"], self.weight_variables)
            self.optimizer.apply(grads, self.weight_variables)
            self._update_multipliers(terms)
            return terms

        method = self.method

        def gradient_arch_step(images: Any, labels: Any, arch_images: Any,
                               arch_labels: Any) -> dict[str, Any]:
            """α by gradient on the full loss (DARTS, FBNet, LightNAS; ProxylessNAS Eq. 4 on
            two sampled paths, then the rescaling of Sec. 3.2.1)."""
            alphas = self.architecture_variables
            old = [tf.identity(a.value) for a in alphas]
            with arch_phase(supernet.searchable_layers(self.model)):
                with tf.GradientTape() as tape:
                    arch_terms = self.loss_terms(arch_images, arch_labels)
            grads = tape.gradient(arch_terms["loss"], alphas)
            self.arch_optimizer.apply(grads, alphas)
            if method.rescale_alpha:
                supernet.rescale_proxyless_alpha(self.model, old)
            return arch_terms

        def reinforce_arch_step(images: Any, labels: Any, arch_images: Any,
                                arch_labels: Any) -> dict[str, Any]:
            """α by REINFORCE (ProxylessNAS Eq. 8): sample `rl_samples` networks (one path per
            layer, drawn from p), reward each with −(CE + cost terms) of the sampled network
            on the held-out batch (the log of ProxylessNAS' ACC·(LAT/T)^−w, with CE for log
            ACC, under a fixed λ; budgets' terms likewise), and ascend
            E[(reward − baseline)·∇ log p(network)]. The baseline moves towards the mean
            reward by `rl_baseline_weight` per step (their baseline_decay_weight)."""
            context = tf.distribute.get_replica_context()
            rewards, log_probs = [], []
            with tf.GradientTape() as tape:
                for _ in range(self.config.rl_samples):
                    sample = self.loss_terms(arch_images, arch_labels, sampled=True)
                    rewards.append(-tf.stop_gradient(context.all_reduce("SUM", sample["loss"])))
                    log_probs.append(supernet.sampled_log_probability(self.model))
                mean = tf.add_n(rewards) / len(rewards)
                weight = self.config.rl_baseline_weight
                self.baseline.assign(self.baseline_set * (self.baseline + weight * (
                    mean - self.baseline)) + (1.0 - self.baseline_set) * mean)
                self.baseline_set.assign(1.0)
                surrogate = -tf.add_n([(r - self.baseline) * lp
                                       for r, lp in zip(rewards, log_probs)]) / len(rewards)
                surrogate = surrogate / self.strategy.num_replicas_in_sync
            grads = tape.gradient(surrogate, self.architecture_variables)
            self.arch_optimizer.apply(grads, self.architecture_variables)
            # what the budgets integrate: the network the search would return now
            terms = {}
            replicas = self.strategy.num_replicas_in_sync
            for c in self.config.constraints:
                value = supernet.expected_cost(self.model, c.cost_model,
                                               self.method.budget_view)
                terms[f"cost_{c.name}"] = tf.cast(value, tf.float32) / replicas
            return terms

        def second_order_arch_step(images: Any, labels: Any, arch_images: Any,
                                   arch_labels: Any) -> dict[str, Any]:
            """α by DARTS' second-order approximation (Eq. 7-8): the gradient of the held-out
            loss at the unrolled weights w' = w − ξ∇_w L_train(w, α), minus
            ξ·(∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε with w± = w ± ε∇_w' L_val(w', α)
            and ε = 0.01 / ‖∇_w' L_val‖; ξ is the weights' current learning rate (DARTS
            unrolls its SGD step; tfnas's weights learn with Adam, the unrolled step is plain
            gradient descent). The weights are restored afterwards."""
            weights, alphas = self.weight_variables, self.architecture_variables
            xi = tf.cast(self.optimizer.learning_rate, tf.float32)
            saved = [tf.identity(w.value) for w in weights]
            with tf.GradientTape() as tape:
                train_ce = self.loss_terms(images, labels)["ce"]
            for w, g in zip(weights, tape.gradient(train_ce, weights)):
                if g is not None:
                    w.assign_sub(xi * g)
            with tf.GradientTape() as tape:
                arch_terms = self.loss_terms(arch_images, arch_labels)
            grads = tape.gradient(arch_terms["loss"], [*alphas, *weights])
            d_alpha, d_w = grads[:len(alphas)], grads[len(alphas):]
            eps = 0.01 / (tf.linalg.global_norm([g for g in d_w if g is not None]) + 1e-12)

            def train_alpha_gradient(sign: float) -> list[Any]:
                for w, w0, g in zip(weights, saved, d_w):
                    w.assign(w0 + sign * eps * g if g is not None else w0)
                with tf.GradientTape() as tape:
                    ce = self.loss_terms(images, labels)["ce"]
                return tape.gradient(ce, alphas)

            plus, minus = train_alpha_gradient(1.0), train_alpha_gradient(-1.0)
            for w, w0 in zip(weights, saved):
                w.assign(w0)
            grads = [a - xi * (p - m) / (2.0 * eps) for a, p, m in zip(d_alpha, plus, minus)]
            self.arch_optimizer.apply(grads, alphas)
            return arch_terms

        arch_step = {"reinforce": reinforce_arch_step, "second_order": second_order_arch_step
                     }.get(method.arch_update, gradient_arch_step)

        def bi_level(images: Any, labels: Any, arch_images: Any,
                     arch_labels: Any) -> dict[str, Any]:
            with tf.GradientTape() as tape:
                terms = self.loss_terms(images, labels)
            grads = tape.gradient(terms["ce"], self.weight_variables)
            self.optimizer.apply(grads, self.weight_variables)
            if train_arch:
                arch_terms = arch_step(images, labels, arch_images, arch_labels)
                self._update_multipliers(arch_terms)
                terms.update({k: v for k, v in arch_terms.items() if k.startswith("cost")})
            return terms

        # the steps hold no Python control flow on tensors: autograph's conversion would only
        # cost start-up (2 s of the tiny search's 11 s first step here)
        step = tf.function(bi_level if self.multi_path else one_level,
                           jit_compile=self.config.jit_compile, autograph=False)

        def distributed_step(*batch: Any) -> dict[str, Any]:
            per_replica = self.strategy.run(step, args=batch)
            return {key: self.strategy.reduce("SUM", value, axis=None)
                    for key, value in per_replica.items()}

        self._steps[train_arch] = tf.function(distributed_step, autograph=False)
        return self._steps[train_arch]
