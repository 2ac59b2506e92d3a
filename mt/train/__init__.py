"""The training machine, the same for every task: the loop (``loop.Trainer``) with its small hook interface
(``hooks.Hook``), one update (``step``), the learning-rate schedule, when to stop, and what a task supplies
(``task.TrainingTask``). It knows no recipe: R-Drop's budget guard, kept checkpoints and the final-model
choice, and the freezing of pre-trained weights are hooks in ``mt.recipes``; the tasks (``mt.tasks``) plug
them in."""
