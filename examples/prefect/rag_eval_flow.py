"""An LLM evaluation flow: retrieve context, answer with a prompt template, score the answers.

What orchestrack records for an LLM run: the prompt template (hashed and stored like a config),
the retrieval settings and the model, and latency, tokens and cost per batch as metrics with
units, beside the accuracy. The "model" here is a deterministic stand-in that copies the best
context sentence, so the flow runs anywhere; swap ``generate`` for your provider's client.

    python examples/prefect/rag_eval_flow.py
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from prefect import task

import orchestrack
from orchestrack.prefect import tracked_flow

HERE = Path(__file__).resolve().parent
SETTINGS = yaml.safe_load((HERE / "rag_eval.yaml").read_text())
DOCUMENTS = [
    "Refunds are paid within 14 days of the return arriving at the warehouse.",
    "Premium members get free shipping on every order.",
    "Orders can be cancelled until they leave the warehouse.",
    "The support line is open from 8:00 to 20:00 on weekdays.",
    "Gift cards are valid for three years from the day of purchase.",
]
QUESTIONS = [
    ("How long do refunds take?", "14 days"),
    ("Who gets free shipping?", "premium members"),
    ("Until when can an order be cancelled?", "leave the warehouse"),
    ("When is the support line open?", "8:00 to 20:00"),
    ("How long are gift cards valid?", "three years"),
    ("Do you ship to the moon?", "unknown"),
    ("Is shipping free for premium members?", "free shipping"),
    ("When are refunds paid?", "14 days"),
]


def words(text: str) -> set[str]:
    return {w.strip("?.,:").lower() for w in text.split() if len(w.strip("?.,:")) > 3}


def retrieve(question: str, top_k: int) -> list[str]:
    ranked = sorted(DOCUMENTS, key=lambda d: len(words(d) & words(question)), reverse=True)
    return [d for d in ranked[:top_k] if words(d) & words(question)]


def generate(prompt: str, context: list[str], question: str) -> tuple[str, int, int]:
    """The stand-in model: the context sentence sharing most words with the question, or "unknown"."""
    best = max(context, key=lambda d: len(words(d) & words(question)), default="unknown")
    return best, len(prompt.split()), len(best.split())


@task
def answer_batch(batch: list[tuple[str, str]], step: int) -> int:
    template = (HERE / "rag_answer.txt").read_text()
    retrieval, generation = SETTINGS["retrieval"], SETTINGS["generation"]
    started, correct, tokens_in, tokens_out = time.perf_counter(), 0, 0, 0
    for question, expected in batch:
        context = retrieve(question, retrieval["top_k"])
        prompt = template.format(context="\n".join(context), question=question)
        answer, used_in, used_out = generate(prompt, context, question)
        correct += expected.lower() in answer.lower()
        tokens_in, tokens_out = tokens_in + used_in, tokens_out + used_out
    cost = (tokens_in + tokens_out) / 1000 * generation["price_per_1k_tokens"]
    orchestrack.log_llm_usage(latency_s=time.perf_counter() - started, cost=cost, input_tokens=tokens_in,
                              output_tokens=tokens_out, step=step)
    return correct


@tracked_flow(purpose="tuning", configs=["rag_eval.yaml"], log_prints=True)
def rag_eval() -> float:
    retrieval, generation = SETTINGS["retrieval"], SETTINGS["generation"]
    orchestrack.log_prompt("answer", path=HERE / "rag_answer.txt")
    orchestrack.log_llm(provider=generation["provider"], model=generation["model"],
                        max_tokens=generation["max_tokens"], retrieval=retrieval)
    size = SETTINGS["evaluation"]["batch_size"]
    batches = [QUESTIONS[i:i + size] for i in range(0, len(QUESTIONS), size)]
    correct = sum(answer_batch(batch, step) for step, batch in enumerate(batches))
    accuracy = correct / len(QUESTIONS)
    orchestrack.log_metrics({"answer_accuracy": accuracy})
    print(f"answer accuracy {accuracy:.2f}")
    return accuracy


if __name__ == "__main__":
    rag_eval()
