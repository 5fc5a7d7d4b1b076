"""What answers: the backend protocol, llama.cpp, OpenAI-compatible servers, escalation targets, token confidence
and the health probe. Imports data, the contract and the foundation."""
