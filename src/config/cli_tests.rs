//! Tests of `config::cli`.

use super::*;

fn argv(items: &[&str]) -> Vec<String> {
    std::iter::once("aiotest")
        .chain(items.iter().copied())
        .map(String::from)
        .collect()
}

fn run(items: &[&str], file: &[(String, String, Vec<String>)]) -> Cli {
    match parse_options(&argv(items), file, &[]).unwrap() {
        ParseOutcome::Run(cli) => *cli,
        ParseOutcome::Exit { text, .. } => panic!("exit: {text}"),
    }
}

#[test]
fn locust_flags_parse() {
    let cli = run(
        &[
            "-f",
            "x.py",
            "-H",
            "http://h",
            "-u",
            "100",
            "-r",
            "50",
            "-t",
            "1h30m",
            "--headless",
            "A",
            "B",
        ],
        &[],
    );
    assert_eq!(cli.run.aiotestfile, "x.py");
    assert_eq!(cli.run.users, 100);
    assert_eq!(cli.run.spawn_rate, 50.0);
    assert_eq!(cli.run.run_time_s, Some(5400.0));
    assert!(cli.run.headless);
    assert_eq!(cli.run.user_classes, ["A", "B"]);
}

#[test]
fn bad_values_name_the_flag() {
    for (args, needle) in [
        (&["-t", "10x"][..], "--run-time"),
        (&["-u", "-3"][..], "--users"),
    ] {
        let err = parse_options(&argv(args), &[], &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{text}");
        assert!(matches!(err, ConfigError::Usage { exit_code: 2, .. }));
    }
}

#[test]
fn command_line_beats_config_file() {
    let file = vec![
        (
            "aiotest.conf".to_string(),
            "users".to_string(),
            vec!["7".to_string()],
        ),
        (
            "aiotest.conf".to_string(),
            "headless".to_string(),
            vec!["true".to_string()],
        ),
        (
            "aiotest.conf".to_string(),
            "spawn_rate".to_string(),
            vec!["3".to_string()],
        ),
    ];
    let cli = run(&["-u", "9"], &file);
    assert_eq!(cli.run.users, 9);
    assert_eq!(cli.run.spawn_rate, 3.0);
    assert!(cli.run.headless);
}

#[test]
fn unknown_file_key_is_an_error() {
    let file = vec![(
        "aiotest.conf".to_string(),
        "userz".to_string(),
        vec!["1".to_string()],
    )];
    let err = parse_options(&argv(&[]), &file, &[]).unwrap_err();
    assert!(err.to_string().contains("'userz'"));
}

#[test]
fn version_and_help_exit_zero() {
    for flag in ["--version", "--help"] {
        match parse_options(&argv(&[flag]), &[], &[]).unwrap() {
            ParseOutcome::Exit { exit_code, text } => {
                assert_eq!(exit_code, 0);
                assert!(text.contains("aiotest"));
            }
            ParseOutcome::Run(_) => panic!("{flag} should exit"),
        }
    }
}

#[test]
fn custom_options_parse_like_built_in_ones() {
    let custom = [
        CustomOption {
            long: "shop-id".into(),
            help: "which shop".into(),
            env: Some("AIOTEST_TEST_SHOP_ID".into()),
            flag: false,
        },
        CustomOption {
            long: "fast".into(),
            flag: true,
            ..CustomOption::default()
        },
        CustomOption {
            long: "unset".into(),
            ..CustomOption::default()
        },
    ];
    let file = vec![("aiotest.conf".into(), "fast".into(), vec!["true".into()])];
    let ParseOutcome::Run(cli) =
        parse_options(&argv(&["--shop-id", "7", "-u", "2"]), &file, &custom).unwrap()
    else {
        panic!("expected a run");
    };
    let values = &cli.run.custom_options;
    assert_eq!(values["shop_id"], serde_json::json!("7"));
    assert_eq!(values["fast"], serde_json::json!(true));
    assert_eq!(values["unset"], serde_json::Value::Null);
    assert_eq!(cli.run.users, 2);
    let err = parse_options(&argv(&["--shop-idd", "7"]), &[], &custom).unwrap_err();
    assert!(err.to_string().contains("--shop-id"), "{err}");
}

#[test]
fn arrival_rates_parse() {
    assert_eq!(parse_arrival_rate("500/s"), Ok(500.0));
    assert_eq!(parse_arrival_rate("250"), Ok(250.0));
    assert_eq!(parse_arrival_rate("30/m"), Ok(0.5));
    for bad in ["0/s", "x", "5/h", "-2"] {
        assert!(
            parse_arrival_rate(bad)
                .unwrap_err()
                .contains("arrival rate"),
            "{bad}"
        );
    }
}

#[test]
fn arrival_stages_parse() {
    let plan = parse_arrival_plan("100/s:30s, 300:1m").unwrap();
    assert_eq!(
        plan.0,
        vec![
            ArrivalStage {
                rate_per_s: 100.0,
                duration_s: Some(30.0)
            },
            ArrivalStage {
                rate_per_s: 300.0,
                duration_s: Some(60.0)
            },
        ]
    );
    assert_eq!(parse_arrival_plan("5/s").unwrap().0[0].duration_s, None);
    assert!(parse_arrival_plan("5/s,10/s:1m")
        .unwrap_err()
        .contains("needs a duration"));
    assert!(parse_arrival_plan("5/s:0s")
        .unwrap_err()
        .contains("above 0"));
}

#[test]
fn demo_target_subcommand() {
    let cli = run(&["demo-target", "--port", "0"], &[]);
    assert!(matches!(
        cli.command,
        Some(Command::DemoTarget(DemoTargetOptions { port: 0, .. }))
    ));
}
