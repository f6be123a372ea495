"""Search: the reward, the strategies behind one ask/tell interface, and a tabular benchmark."""
