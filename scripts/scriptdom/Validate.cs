// rowtrail's validation gate: parses sqlcmd scripts with Microsoft's own T-SQL parser
// (ScriptDom, TSql150Parser), batch by batch, the way sqlcmd splits them.
//
// Usage: mono validate.exe FILE...
// Prints one line per error: FILE: batch N (script line L): line l, column c: MESSAGE
// and a summary "validated S scripts, B batches". Exit code 0 when every batch parses, 1 when
// some do not, 2 on usage or I/O errors.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text.RegularExpressions;
using Microsoft.SqlServer.TransactSql.ScriptDom;

public static class Validate
{
    // sqlcmd ends a batch at a line holding only GO (any case), an optional count and an
    // optional -- comment.
    static readonly Regex Go = new Regex(@"^\s*go(\s+\d+)?\s*(--.*)?$", RegexOptions.IgnoreCase);

    public static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: mono validate.exe FILE...");
            return 2;
        }
        int scripts = 0, batches = 0, failures = 0;
        foreach (var file in args)
        {
            string text;
            try { text = File.ReadAllText(file); }
            catch (Exception e) { Console.Error.WriteLine(file + ": " + e.Message); return 2; }
            scripts++;
            var lines = text.Replace("\r\n", "\n").Split('\n');
            var current = new List<string>();
            int start = 1, number = 0;
            for (int i = 0; i <= lines.Length; i++)
            {
                bool end = i == lines.Length;
                if (!end && !Go.IsMatch(lines[i])) { current.Add(lines[i]); continue; }
                var batch = string.Join("\n", current);
                if (HasSql(batch))
                {
                    number++;
                    batches++;
                    failures += Parse(file, number, start, batch);
                }
                current.Clear();
                start = i + 2;
            }
        }
        Console.WriteLine("validated " + scripts + " scripts, " + batches + " batches, " + failures + " errors");
        return failures == 0 ? 0 : 1;
    }

    static bool HasSql(string batch)
    {
        foreach (var l in batch.Split('\n'))
        {
            var t = l.Trim();
            if (t.Length > 0 && !t.StartsWith("--")) return true;
        }
        return false;
    }

    static int Parse(string file, int number, int start, string batch)
    {
        var parser = new TSql150Parser(true);
        IList<ParseError> errors;
        using (var reader = new StringReader(batch))
        {
            parser.Parse(reader, out errors);
        }
        foreach (var e in errors)
        {
            Console.WriteLine(file + ": batch " + number + " (script line " + start + "): line " +
                e.Line + ", column " + e.Column + ": " + e.Message);
        }
        return errors.Count;
    }
}
