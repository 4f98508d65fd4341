"""How a request becomes an answer: the agent loop (agent/), code workflows (workflows/) and
evals; knows neither Slack nor the tables, and reaches the world only through tools."""
