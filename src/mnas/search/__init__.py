"""Search: the reward, the strategies behind one ask/tell interface, the loop that runs them, and a tabular
benchmark."""
