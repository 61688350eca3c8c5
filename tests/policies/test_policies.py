"""The LM-adapter policy and action vocabularies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlprompt.envs import PromptVecEnv, build_vocabulary
from rlprompt.envs.vocab import ActionVocabulary
from rlprompt.errors import RLPromptError
from rlprompt.policies import LMAdapterPolicy
from rlprompt.rewards import RewardBatch


def _policy(lm, vocab: ActionVocabulary, prompt_length: int = 3, sample_top_k: int | None = None, length_rule=None) -> LMAdapterPolicy:
    import gymnasium as gym

    from rlprompt.envs.prompt_env import observation_space

    return LMAdapterPolicy(
        observation_space(prompt_length, vocab.size),
        gym.spaces.Discrete(vocab.size),
        lambda _: 1e-3,
        backbone=lm.model,
        action_token_ids=vocab.token_ids,
        start_token_id=lm.tokenizer.bos_token_id,
        adapter_hidden=64,
        sample_top_k=sample_top_k,
        length_rule=length_rule,
    )


def test_words_vocabulary_decodes_to_words(bpe_tokenizer) -> None:
    vocab = build_vocabulary(bpe_tokenizer, "words")
    texts = [bpe_tokenizer.decode([i]) for i in vocab.token_ids]
    assert all(t.startswith(" ") and t[1:].isalpha() for t in texts)
    assert vocab.ids([0, 1]) == [vocab.token_ids[0], vocab.token_ids[1]]
    assert vocab.decode([0, 1]) == (texts[0] + texts[1]).strip()


def test_all_vocabulary_excludes_special_tokens(bpe_tokenizer) -> None:
    vocab = build_vocabulary(bpe_tokenizer, "all")
    assert vocab.size == len(bpe_tokenizer) - len(set(bpe_tokenizer.all_special_ids))
    assert not set(vocab.token_ids) & set(bpe_tokenizer.all_special_ids)


def test_unknown_vocabulary_is_an_error(bpe_tokenizer) -> None:
    with pytest.raises(RLPromptError, match="unknown action vocabulary .nope.; valid: all, words, top-K"):
        build_vocabulary(bpe_tokenizer, "nope")


def test_policy_starts_near_uniform_and_uses_the_tied_head(tiny_llama) -> None:
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    policy = _policy(tiny_llama, vocab)
    head_rows = tiny_llama.model.get_output_embeddings().weight[list(vocab.token_ids)]
    assert torch.equal(policy.action_net.weight, head_rows), "ortho init must not overwrite the tied head"
    obs = torch.tensor([[0, 0, 0, 0], [3, 5, 0, 2]], dtype=torch.float32)
    entropy = policy.get_distribution(obs).entropy()
    assert entropy.shape == (2,)
    assert entropy.min().item() == pytest.approx(math.log(vocab.size), abs=1e-3)


def _storages_of_shape(obj, shape: tuple[int, ...]) -> set[int]:
    """Data pointers of every fp32 tensor of ``shape`` an object holds (attributes, parameters, buffers)."""
    found: set[int] = set()
    values = list(vars(obj).values())
    for value in values:
        if isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, torch.Tensor) and tuple(value.shape) == shape and value.dtype is torch.float32:
            found.add(value.untyped_storage().data_ptr())
        elif isinstance(value, torch.nn.Module) and value is not obj:
            for module in value.modules():
                found |= _storages_of_shape(module, shape)
    return found


def test_policy_holds_one_fp32_copy_of_its_action_head(tiny_llama) -> None:
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    policy = _policy(tiny_llama, vocab)
    shape = (vocab.size, tiny_llama.model.config.hidden_size)
    assert len(_storages_of_shape(policy, shape)) == 1
    head_rows = tiny_llama.model.get_output_embeddings().weight[list(vocab.token_ids)].float()
    assert torch.equal(policy.action_net.weight, head_rows)


def test_only_adapter_and_value_head_train(tiny_llama, tmp_path) -> None:
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    policy = _policy(tiny_llama, vocab)
    names = set(policy.trainable_state_dict())
    assert names == {
        "mlp_extractor.adapter.0.weight", "mlp_extractor.adapter.0.bias",
        "mlp_extractor.adapter.2.weight", "mlp_extractor.adapter.2.bias",
        "mlp_extractor.critic.0.weight", "mlp_extractor.critic.0.bias",
        "value_net.weight", "value_net.bias",
    }
    assert all(p.requires_grad is False for p in tiny_llama.model.parameters())
    path = tmp_path / "policy.safetensors"
    policy.save_trainable(str(path))
    assert set(load_file(str(path))) == names
    other = _policy(tiny_llama, vocab)
    other.load_trainable(str(path))
    obs = torch.tensor([[3, 5, 0, 2]], dtype=torch.float32)
    torch.testing.assert_close(other.get_distribution(obs).distribution.logits, policy.get_distribution(obs).distribution.logits)


def test_backbone_stays_in_eval_mode_when_policy_trains(tiny_llama) -> None:
    policy = _policy(tiny_llama, build_vocabulary(tiny_llama.tokenizer, "words"))
    policy.set_training_mode(True)
    assert tiny_llama.model.training is False


def test_ppo_learns_a_rewarded_token(tiny_llama) -> None:
    """Reward = 1 when the prompt's first token is the 4th action: PPO must make it likely."""
    from stable_baselines3 import PPO

    vocab = ActionVocabulary(token_ids=tuple(build_vocabulary(tiny_llama.tokenizer, "words").token_ids[:8]), tokenizer=tiny_llama.tokenizer)
    target_text = vocab.decode([3])

    def reward(prompts):
        rewards = np.array([1.0 if p.split(" ")[0] == target_text else 0.0 for p in prompts])
        return RewardBatch(rewards=rewards, metrics={"accuracy": rewards})

    env = PromptVecEnv(reward, vocab, num_envs=8, prompt_length=2)
    algo = PPO(
        LMAdapterPolicy, env, n_steps=2, batch_size=16, n_epochs=4, learning_rate=3e-3, gamma=1.0, seed=0, device="cpu",
        policy_kwargs=dict(backbone=tiny_llama.model, action_token_ids=vocab.token_ids, start_token_id=tiny_llama.tokenizer.bos_token_id, adapter_hidden=64),
    )
    start = torch.zeros(1, 3)
    before = algo.policy.get_distribution(start).distribution.probs[0, 3].item()
    algo.learn(total_timesteps=8 * 2 * 30)
    after = algo.policy.get_distribution(start).distribution.probs[0, 3].item()
    assert before == pytest.approx(1 / 8, abs=1e-3)
    assert after > 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_trainable_parts_stay_fp32_whatever_the_backbone_dtype(tiny_llama, dtype) -> None:
    """A bf16 backbone used to crash PPO: its bf16 head rows met the fp32 adapter output."""
    import copy

    from stable_baselines3 import PPO

    backbone = copy.deepcopy(tiny_llama.model).to(dtype)
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    env = PromptVecEnv(lambda prompts: RewardBatch(np.arange(len(prompts), dtype=float), {"accuracy": np.zeros(len(prompts))}), vocab, num_envs=4, prompt_length=2)
    algo = PPO(
        LMAdapterPolicy, env, n_steps=2, batch_size=8, n_epochs=1, gamma=1.0, seed=0, device="cpu",
        policy_kwargs=dict(backbone=backbone, action_token_ids=vocab.token_ids, start_token_id=tiny_llama.tokenizer.bos_token_id, adapter_hidden=16),
    )
    policy = algo.policy
    assert {p.dtype for p in policy.parameters()} == {torch.float32}, "adapter, value head and action head are fp32"
    head_rows = backbone.get_output_embeddings().weight[list(vocab.token_ids)]
    torch.testing.assert_close(policy.action_net.weight, head_rows.float())
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    algo.learn(total_timesteps=4 * 2 * 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.trainable_parameters())), "the update ran"
    features = policy.extract_features(torch.tensor([[3.0, 5.0, 2.0]]), policy.features_extractor)
    assert features.dtype is torch.float32 and features.shape == (1, backbone.config.hidden_size)


def test_top_k_vocabulary_ranks_words_by_the_backbone_prior(tiny_llama) -> None:
    from rlprompt.envs.vocab import unigram_prior

    tokenizer = tiny_llama.tokenizer
    words = build_vocabulary(tokenizer, "words")
    top = build_vocabulary(tokenizer, "top-5", tiny_llama.model)
    assert top.size == 5 and set(top.token_ids) <= set(words.token_ids)
    prior = unigram_prior(tiny_llama.model, tokenizer)
    assert prior.shape == (len(tokenizer),) and prior.sum().item() == pytest.approx(1.0, abs=1e-4)
    weakest_kept = min(prior[i].item() for i in top.token_ids)
    assert all(prior[i].item() <= weakest_kept for i in set(words.token_ids) - set(top.token_ids))


@pytest.mark.parametrize(("name", "message"), [("top-0", "K must be a positive integer"), ("top-x", "K must be a positive integer")])
def test_bad_top_k_is_an_error(tiny_llama, name: str, message: str) -> None:
    with pytest.raises(RLPromptError, match=message):
        build_vocabulary(tiny_llama.tokenizer, name, tiny_llama.model)


def test_top_k_needs_the_backbone(bpe_tokenizer) -> None:
    with pytest.raises(RLPromptError, match="needs the policy backbone"):
        build_vocabulary(bpe_tokenizer, "top-5")


def test_word_list_file_vocabulary(bpe_tokenizer, tmp_path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("# sentiment words\ngreat\nterrible  # a comment\n\nxqzzyq\n", encoding="utf-8")
    vocab = build_vocabulary(bpe_tokenizer, str(path))
    expected = sorted(bpe_tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in ["great", "terrible"])
    assert list(vocab.token_ids) == expected
    assert vocab.decode([0, 1]) == bpe_tokenizer.decode(expected).strip()
    empty = tmp_path / "none.txt"
    empty.write_text("xqzzyq\n", encoding="utf-8")
    with pytest.raises(RLPromptError, match="has no word that is a single token"):
        build_vocabulary(bpe_tokenizer, str(empty))


def test_sample_top_k_truncates_the_policy_distribution(tiny_llama) -> None:
    vocab = build_vocabulary(tiny_llama.tokenizer, "words")
    full, truncated = _policy(tiny_llama, vocab), _policy(tiny_llama, vocab, sample_top_k=3)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in (full.mlp_extractor.adapter[0], full.mlp_extractor.adapter[2]):
            layer.weight.normal_(std=0.5)  # non-trivial logits
    truncated.load_state_dict(full.state_dict())
    obs = torch.tensor([[0, 0, 0, 0], [3, 5, 0, 2]], dtype=torch.float32)
    probs = truncated.get_distribution(obs).distribution.probs
    full_probs = full.get_distribution(obs).distribution.probs
    assert (probs > 0).sum(-1).tolist() == [3, 3]
    kept = full_probs.topk(3, dim=-1)
    torch.testing.assert_close(probs.gather(-1, kept.indices), kept.values / kept.values.sum(-1, keepdim=True))
    assert torch.isfinite(truncated.get_distribution(obs).entropy()).all()
    greedy_full, _ = full.predict(obs.numpy(), deterministic=True)
    greedy_truncated, _ = truncated.predict(obs.numpy(), deterministic=True)
    assert np.array_equal(greedy_full, greedy_truncated), "top-k sampling never changes the greedy action"
